"""Tag vocabularies: MagnaTagATune's top-50 tags (`mtt`) and the Million Song Dataset's top-50
Last.fm tags (`msd`), each in its teachers' output order.

Every tag has a category (for grouping in clients) and a synonym group: MTAT keeps near-duplicate
tags such as "vocal"/"vocals"/"voice" as separate columns, and clients usually want to show one.
The group is named after its most frequent MTT member; a tag without synonyms is its own group.
Groups span taxonomies (MTT `female vocal` and MSD `female vocalists` are both `female`).

A tag of a multi-vocabulary model carries its taxonomy, and its `id` (`msd/rock`) is what every
output names it by, so the two `rock`s never collide. A tag without a taxonomy (every checkpoint
from before two vocabularies, and the single-vocabulary teachers) is named by its bare name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any, Literal

Category = Literal["genre", "era", "mood", "instrument", "vocal", "tempo/dynamics", "other"]
CATEGORIES: tuple[Category, ...] = (
    "genre",
    "era",
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
    taxonomy: str | None = None

    def __post_init__(self) -> None:
        if not self.name or self.name != self.name.strip():
            raise ValueError(f"tag names must be non-empty and unpadded, got {self.name!r}")
        if self.category not in CATEGORIES:
            raise ValueError(f"unknown category {self.category!r} for tag {self.name!r}")
        if self.taxonomy is not None and not _TAXONOMY_PATTERN.fullmatch(self.taxonomy):
            raise ValueError(
                f"taxonomy of tag {self.name!r} must be a short lower-case word, "
                f"got {self.taxonomy!r}"
            )

    @property
    def id(self) -> str:
        """What outputs call this tag: `taxonomy/name`, or the bare name without a taxonomy."""
        return f"{self.taxonomy}/{self.name}" if self.taxonomy else self.name

    def to_dict(self) -> dict[str, str]:
        data = {"name": self.name, "category": self.category, "synonym_group": self.synonym_group}
        if self.taxonomy is not None:
            data["taxonomy"] = self.taxonomy
        return data

    @classmethod
    def from_dict(cls, data: Any) -> Tag:
        if not isinstance(data, dict) or not isinstance(data.get("name"), str):
            raise ValueError(f"a tag must be an object with a 'name', got {data!r}")
        name: str = data["name"]
        group = data.get("synonym_group", name)
        if not isinstance(group, str):
            raise ValueError(f"synonym_group of tag {name!r} must be a string")
        taxonomy = data.get("taxonomy")
        if taxonomy is not None and not isinstance(taxonomy, str):
            raise ValueError(f"taxonomy of tag {name!r} must be a string")
        return cls(
            name=name,
            category=data.get("category", "other"),
            synonym_group=group,
            taxonomy=taxonomy,
        )


_TAXONOMY_PATTERN = re.compile(r"[a-z][a-z0-9_-]{0,15}")


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

# The 50 Last.fm tags of musicnn's MSD models (`musicnn/configuration.py`, `MSD_LABELS`), in
# their output order. Names are lower-cased ("Hip-Hop" is `hip-hop`); the order is untouched.
MSD_TAGS: tuple[Tag, ...] = (
    _tag("rock", "genre"),
    _tag("pop", "genre"),
    _tag("alternative", "genre"),
    _tag("indie", "genre"),
    _tag("electronic", "genre"),
    _tag("female vocalists", "vocal", "female"),
    _tag("dance", "genre"),
    _tag("00s", "era"),
    _tag("alternative rock", "genre"),
    _tag("jazz", "genre"),
    _tag("beautiful", "mood"),
    _tag("metal", "genre"),
    _tag("chillout", "mood", "chill"),
    _tag("male vocalists", "vocal", "male"),
    _tag("classic rock", "genre"),
    _tag("soul", "genre"),
    _tag("indie rock", "genre"),
    _tag("mellow", "mood"),
    _tag("electronica", "genre", "electronic"),
    _tag("80s", "era"),
    _tag("folk", "genre"),
    _tag("90s", "era"),
    _tag("chill", "mood"),
    _tag("instrumental", "vocal", "no vocals"),
    _tag("punk", "genre"),
    _tag("oldies", "era"),
    _tag("blues", "genre"),
    _tag("hard rock", "genre"),
    _tag("ambient", "genre"),
    _tag("acoustic", "instrument"),
    _tag("experimental", "genre"),
    _tag("female vocalist", "vocal", "female"),
    _tag("guitar", "instrument"),
    _tag("hip-hop", "genre"),
    _tag("70s", "era"),
    _tag("party", "mood"),
    _tag("country", "genre"),
    _tag("easy listening", "genre"),
    _tag("sexy", "mood"),
    _tag("catchy", "mood"),
    _tag("funk", "genre"),
    _tag("electro", "genre"),
    _tag("heavy metal", "genre", "metal"),
    _tag("progressive rock", "genre"),
    _tag("60s", "era"),
    _tag("rnb", "genre"),
    _tag("indie pop", "genre"),
    _tag("sad", "mood"),
    _tag("house", "genre"),
    _tag("happy", "mood"),
)

MSD_TAG_NAMES: tuple[str, ...] = tuple(tag.name for tag in MSD_TAGS)

TAXONOMIES: dict[str, tuple[Tag, ...]] = {"mtt": MTAT_TAGS, "msd": MSD_TAGS}


def with_taxonomy(tags: tuple[Tag, ...], taxonomy: str) -> tuple[Tag, ...]:
    """The same tags, qualified by `taxonomy` (so their ids are `taxonomy/name`)."""
    return tuple(replace(tag, taxonomy=taxonomy) for tag in tags)


# The default model's vocabulary since v2: one output per tag of both taxonomies, MTT first.
TWO_VOCABULARY_TAGS: tuple[Tag, ...] = with_taxonomy(MTAT_TAGS, "mtt") + with_taxonomy(
    MSD_TAGS, "msd"
)


def check_vocabulary(tags: tuple[Tag, ...]) -> None:
    """Refuse a vocabulary whose outputs could not be told apart: ids must be unique, and a
    vocabulary either qualifies every tag with a taxonomy or none."""
    ids = [tag.id for tag in tags]
    duplicates = sorted({tag_id for tag_id in ids if ids.count(tag_id) > 1})
    if duplicates:
        raise ValueError(f"tag ids must be unique, repeated: {duplicates}")
    qualified = {tag.taxonomy is not None for tag in tags}
    if len(qualified) > 1:
        raise ValueError("either every tag has a taxonomy or none does")


def taxonomies_of(tags: tuple[Tag, ...]) -> tuple[str, ...]:
    """The taxonomies of a vocabulary in output order; empty for an unqualified one."""
    return tuple(dict.fromkeys(tag.taxonomy for tag in tags if tag.taxonomy is not None))


def custom_vocabulary(names: list[str]) -> tuple[Tag, ...]:
    """Tags for a user's own vocabulary: known MTAT tags keep their category, others are 'other'."""
    known = {tag.name: tag for tag in MTAT_TAGS}
    if len(set(names)) != len(names):
        raise ValueError("tag names must be unique")
    return tuple(known.get(name) or _tag(name, "other") for name in names)
