"""The vocabulary as every output shows it: tags named by id, a taxonomy chosen per request, the
top-k listing one tag per synonym group, names resolved, and the grouped listing of `GET /tags`
and `tagger tags`. The service, `tagger` and the catalogue all ask this module; none decides
these things itself.

- Names: a tag is named by its id (`msd/rock`; the bare name in a single-vocabulary model, so
  old checkpoints answer exactly as before). Where a client names a tag, an id always works and
  a bare name works where it is unambiguous (`jazz`); `rock` names `mtt/rock` and `msd/rock`
  and is refused with both candidates.
- Taxonomy: a request may select one taxonomy (`mtt`, `msd`) of a multi-vocabulary model; its
  top-k, segments and listings then hold that taxonomy's tags only. A model without taxonomies
  accepts none.
- Synonyms: `one` lists the best-scoring member of each synonym group only (groups span
  taxonomies: MTT `female vocal` and MSD `female vocalists` are both `female`), `all` lists
  every tag. The default is `one` for a multi-vocabulary model and `all` for a single-vocabulary
  one (its responses stay what they were). Threshold decisions stay per tag either way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal, get_args

from model.tags import CATEGORIES, Tag, taxonomies_of

Synonyms = Literal["one", "all"]
SYNONYM_CHOICES: tuple[str, ...] = get_args(Synonyms)


class VocabularyError(ValueError):
    """A request names a taxonomy or tag the model does not have; the message says what does."""


class UnknownTaxonomyError(VocabularyError):
    def __init__(self, message: str, taxonomies: Sequence[str]) -> None:
        super().__init__(message)
        self.taxonomies = tuple(taxonomies)


class UnknownTagError(VocabularyError):
    pass


class AmbiguousTagError(VocabularyError):
    """A bare name that several taxonomies share; `candidates` are the ids it could mean."""

    def __init__(self, name: str, candidates: Sequence[str]) -> None:
        self.candidates = tuple(candidates)
        super().__init__(
            f"tag {name!r} is ambiguous: it names {', '.join(self.candidates)}; "
            "name one of them by its id"
        )


def tag_fields(
    tag: Tag, *, score: float, threshold: float, passes_threshold: bool
) -> dict[str, Any]:
    """One tag of a top-k list as every output writes it: `tag` (the id), `score`, `category`,
    `synonym_group`, `taxonomy` (only for a tag that has one), `threshold`, `passes_threshold`,
    in this order (the order of the records before taxonomies)."""
    fields: dict[str, Any] = {
        "tag": tag.id,
        "score": score,
        "category": tag.category,
        "synonym_group": tag.synonym_group,
    }
    if tag.taxonomy is not None:
        fields["taxonomy"] = tag.taxonomy
    return fields | {"threshold": threshold, "passes_threshold": passes_threshold}


@dataclass(frozen=True)
class Vocabulary:
    """A checkpoint's tags, in model output order."""

    tags: tuple[Tag, ...]

    @cached_property
    def taxonomies(self) -> tuple[str, ...]:
        return taxonomies_of(self.tags)

    @cached_property
    def ids(self) -> tuple[str, ...]:
        return tuple(tag.id for tag in self.tags)

    @property
    def default_synonyms(self) -> Synonyms:
        # A single-vocabulary model keeps listing every tag, also with a tag set's (qualified)
        # tags appended to its bare-named ones.
        qualified = all(tag.taxonomy is not None for tag in self.tags)
        return "one" if self.taxonomies and qualified else "all"

    def synonyms(self, asked: str | None) -> Synonyms:
        """The synonym rule of a request: what it asked for, or the model's default."""
        if asked is None:
            return self.default_synonyms
        if asked not in SYNONYM_CHOICES:
            raise VocabularyError(
                f"synonyms must be one of {', '.join(SYNONYM_CHOICES)}, got {asked!r}"
            )
        return "one" if asked == "one" else "all"

    def select(self, taxonomy: str | None) -> tuple[int, ...]:
        """Output indices of `taxonomy`'s tags (every index for None), in model order."""
        if taxonomy is None:
            return tuple(range(len(self.tags)))
        if not self.taxonomies:
            raise UnknownTaxonomyError(
                f"taxonomy {taxonomy!r} was asked for, but this model's vocabulary has no "
                "taxonomies (its tags are named by bare names); leave taxonomy out",
                (),
            )
        if taxonomy not in self.taxonomies:
            raise UnknownTaxonomyError(
                f"unknown taxonomy {taxonomy!r}; this model's taxonomies are "
                + ", ".join(self.taxonomies),
                self.taxonomies,
            )
        return tuple(i for i, tag in enumerate(self.tags) if tag.taxonomy == taxonomy)

    def resolve(self, name: str, *, taxonomy: str | None = None) -> int:
        """The output index of one tag named by its id or an unambiguous bare name (looked up
        in `taxonomy` only, if given: `rock` in msd is msd/rock)."""
        if name in self.ids:
            return self.ids.index(name)
        among = self.select(taxonomy)
        named = [i for i in among if self.tags[i].name == name]
        if len(named) > 1:
            raise AmbiguousTagError(name, [self.ids[i] for i in named])
        if not named:
            raise UnknownTagError(f"unknown tag {name!r}; {self._known()}")
        return named[0]

    def resolve_filter(self, name: str) -> list[int]:
        """The outputs a catalogue filter means by `name`: the tags of that name or synonym group
        (`vocal` also means `singing`, `vocals`, `voice`). `taxonomy/name` looks in one
        taxonomy; a bare name whose matches lie in several taxonomies is ambiguous."""
        taxonomy, _, rest = name.partition("/")
        if rest and taxonomy in self.taxonomies:
            return [
                i
                for i, tag in enumerate(self.tags)
                if tag.taxonomy == taxonomy and rest in (tag.name, tag.synonym_group)
            ]
        columns = [i for i, tag in enumerate(self.tags) if name in (tag.name, tag.synonym_group)]
        spanned = {self.tags[i].taxonomy for i in columns}
        if len(spanned) > 1:
            candidates = [f"{t}/{name}" for t in self.taxonomies if t in spanned]
            raise AmbiguousTagError(name, candidates)
        if not columns:
            raise UnknownTagError(f"unknown tag {name!r}; {self._known()}")
        return columns

    def _known(self) -> str:
        return "the model's tags are " + ", ".join(self.ids)

    def listing(self, thresholds: Sequence[float], taxonomy: str | None) -> dict[str, Any]:
        """`GET /tags` (and `tagger tags --json`): the selected tags in model order (`tags`),
        and the same tags grouped (`taxonomies`: each taxonomy, then its categories in
        `model.tags.CATEGORIES` order, then its tags in model order). A single-vocabulary model
        has one group with taxonomy null, and its tag entries keep their old fields."""
        chosen = self.select(taxonomy)
        entries = {i: self._entry(i, thresholds[i]) for i in chosen}
        groups: list[dict[str, Any]] = []
        for name in self.taxonomies if taxonomy is None else (taxonomy,):
            members = [i for i in chosen if self.tags[i].taxonomy == name]
            groups.append({"taxonomy": name, "categories": self._categories(members, entries)})
        bare = [i for i in chosen if self.tags[i].taxonomy is None]
        if bare:  # a single-vocabulary model's tags (tag sets may add qualified ones after)
            groups.insert(0, {"taxonomy": None, "categories": self._categories(bare, entries)})
        return {"tags": [entries[i] for i in chosen], "taxonomies": groups}

    def _categories(
        self, members: Sequence[int], entries: dict[int, dict[str, Any]]
    ) -> list[dict[str, Any]]:
        return [
            {
                "category": category,
                "tags": [entries[i] for i in members if self.tags[i].category == category],
            }
            for category in CATEGORIES
            if any(self.tags[i].category == category for i in members)
        ]

    def _entry(self, index: int, threshold: float) -> dict[str, Any]:
        tag = self.tags[index]
        entry: dict[str, Any] = {"index": index}
        if tag.taxonomy is not None:
            entry |= {"id": tag.id, "taxonomy": tag.taxonomy}
        return entry | {
            "name": tag.name,
            "category": tag.category,
            "synonym_group": tag.synonym_group,
            "threshold": float(threshold),
        }
