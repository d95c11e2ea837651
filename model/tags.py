"""The tag vocabulary: MagnaTagATune's top-50 tags in the standard `tags.npy` order.

Every tag has a category (for grouping in clients) and a synonym group: MTAT keeps near-duplicate
tags such as "vocal"/"vocals"/"voice" as separate columns, and clients usually want to show one.
The group is named after its most frequent member; a tag without synonyms is its own group.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Category = Literal["genre", "mood", "instrument", "vocal", "tempo/dynamics", "other"]
CATEGORIES: tuple[Category, ...] = (
    "genre",
    "mood",
    "instrument",
    "vocal",
    "tempo/dynamics",
    "other",
)


@dataclass(frozen=True)
class Tag:
    name: str
    category: Category
    synonym_group: str

    def __post_init__(self) -> None:
        if not self.name or self.name != self.name.strip():
            raise ValueError(f"tag names must be non-empty and unpadded, got {self.name!r}")
        if self.category not in CATEGORIES:
            raise ValueError(f"unknown category {self.category!r} for tag {self.name!r}")

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "category": self.category, "synonym_group": self.synonym_group}

    @classmethod
    def from_dict(cls, data: Any) -> Tag:
        if not isinstance(data, dict) or not isinstance(data.get("name"), str):
            raise ValueError(f"a tag must be an object with a 'name', got {data!r}")
        name: str = data["name"]
        group = data.get("synonym_group", name)
        if not isinstance(group, str):
            raise ValueError(f"synonym_group of tag {name!r} must be a string")
        return cls(name=name, category=data.get("category", "other"), synonym_group=group)


def _tag(name: str, category: Category, group: str | None = None) -> Tag:
    return Tag(name=name, category=category, synonym_group=group or name)


MTAT_TAGS: tuple[Tag, ...] = (
    _tag("guitar", "instrument"),
    _tag("classical", "genre"),
    _tag("slow", "tempo/dynamics"),
    _tag("techno", "genre"),
    _tag("strings", "instrument"),
    _tag("drums", "instrument"),
    _tag("electronic", "genre"),
    _tag("rock", "genre"),
    _tag("fast", "tempo/dynamics"),
    _tag("piano", "instrument"),
    _tag("ambient", "genre"),
    _tag("beat", "tempo/dynamics"),
    _tag("violin", "instrument"),
    _tag("vocal", "vocal"),
    _tag("synth", "instrument"),
    _tag("female", "vocal"),
    _tag("indian", "genre"),
    _tag("opera", "genre"),
    _tag("male", "vocal"),
    _tag("singing", "vocal", "vocal"),
    _tag("vocals", "vocal", "vocal"),
    _tag("no vocals", "vocal", "no vocals"),
    _tag("harpsichord", "instrument"),
    _tag("loud", "tempo/dynamics"),
    _tag("quiet", "tempo/dynamics"),
    _tag("flute", "instrument"),
    _tag("woman", "vocal", "female"),
    _tag("male vocal", "vocal", "male"),
    _tag("no vocal", "vocal", "no vocals"),
    _tag("pop", "genre"),
    _tag("soft", "mood"),
    _tag("sitar", "instrument"),
    _tag("solo", "instrument"),
    _tag("man", "vocal", "male"),
    _tag("classic", "genre", "classical"),
    _tag("choir", "vocal"),
    _tag("voice", "vocal", "vocal"),
    _tag("new age", "genre"),
    _tag("dance", "genre"),
    _tag("male voice", "vocal", "male"),
    _tag("female vocal", "vocal", "female"),
    _tag("beats", "tempo/dynamics", "beat"),
    _tag("harp", "instrument"),
    _tag("cello", "instrument"),
    _tag("no voice", "vocal", "no vocals"),
    _tag("weird", "mood"),
    _tag("country", "genre"),
    _tag("metal", "genre"),
    _tag("female voice", "vocal", "female"),
    _tag("choral", "vocal", "choir"),
)

MTAT_TAG_NAMES: tuple[str, ...] = tuple(tag.name for tag in MTAT_TAGS)


def custom_vocabulary(names: list[str]) -> tuple[Tag, ...]:
    """Tags for a user's own vocabulary: known MTAT tags keep their category, others are 'other'."""
    known = {tag.name: tag for tag in MTAT_TAGS}
    if len(set(names)) != len(names):
        raise ValueError("tag names must be unique")
    return tuple(known.get(name) or _tag(name, "other") for name in names)
