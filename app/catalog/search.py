"""Searching a catalogue: the tracks nearest to a query embedding, with filters on tags.

Filters:

- `tags` with `min_score`: each named tag (a tag of the vocabulary, or a synonym group such as
  "vocal", whose best member counts) must score at least `min_score` in the result, or the tag's
  own decision threshold when `min_score` is None. In a multi-vocabulary catalogue a name is
  qualified by its taxonomy (`msd/rock`, `mtt/vocal`: the tag or group within that taxonomy); a
  bare name works where only one taxonomy has it (`jazz`), and one that several have (`rock`)
  is refused naming the candidates (`app.pipeline.vocabulary.Vocabulary.resolve_filter`);
- `taxonomy`: categories of the vocabulary ("genre", "mood", "instrument", ...) in which a result
  must have the same best tag as the query (`--taxonomy genre`: the same genre).

The index is asked for more neighbours than wanted, the filters are applied to them, and the
request grows fourfold until enough results pass or the whole catalogue has been looked at; a
filter that few tracks pass costs more, and is exact in the end.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from app.catalog.index import CatalogIndex
from app.catalog.store import CatalogError, CatalogStore, ModelMismatchError, Track, Vector
from app.pipeline.describe import top_indices
from app.pipeline.vocabulary import AmbiguousTagError, Vocabulary, VocabularyError
from model.embedding import EmbeddingSpec
from model.tags import CATEGORIES, Tag


class UnknownTrackError(CatalogError):
    """No track with this id (or path) in the catalogue."""


class BadFilterError(CatalogError):
    """A filter names a tag or category the catalogue's vocabulary does not have."""

    def __init__(self, message: str, candidates: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.candidates = tuple(candidates)  # the ids an ambiguous tag name could mean


class EmptyCatalogError(CatalogError):
    """Nothing has been indexed yet."""


@dataclass(frozen=True)
class Filters:
    tags: tuple[str, ...] = ()
    min_score: float | None = None
    taxonomy: tuple[str, ...] = ()


@dataclass(frozen=True)
class Match:
    """One result: the track, its cosine similarity to the query, its best tags."""

    track: Track
    similarity: float
    top_tags: list[tuple[str, float]] = field(default_factory=list)


class Catalog:
    """A catalogue opened for searching.

    Args:
        store: The database.
        writer: True in `tagger index` (which saves the index); readers never write.
    """

    def __init__(self, store: CatalogStore, *, writer: bool = False) -> None:
        self.store = store
        self.index = CatalogIndex(store, writer=writer)
        self._vocabulary: Vocabulary | None = None

    @property
    def spec(self) -> EmbeddingSpec | None:
        return self.store.spec

    @property
    def tags(self) -> tuple[Tag, ...]:
        return self.store.tags

    @property
    def vocabulary(self) -> Vocabulary:
        tags = self.tags
        if self._vocabulary is None or self._vocabulary.tags != tags:
            self._vocabulary = Vocabulary(tags)
        return self._vocabulary

    def check_model(self, spec: EmbeddingSpec) -> None:
        """Raise ModelMismatchError unless the catalogue was built with embeddings like `spec`."""
        mine = self.spec
        if mine is None:
            raise EmptyCatalogError(f"{self.store.path}: the catalogue is empty; index some files")
        if mine != spec:
            raise ModelMismatchError(mine, spec)

    def track(self, track_id: int) -> Track:
        found = self.store.track(track_id)
        if found is None:
            raise UnknownTrackError(f"no track with id {track_id} in the catalogue")
        return found

    def _tag_columns(self, name: str) -> list[int]:
        try:
            return self.vocabulary.resolve_filter(name)
        except AmbiguousTagError as error:
            raise BadFilterError(str(error), error.candidates) from None
        except VocabularyError:
            raise BadFilterError(
                f"unknown tag {name!r}; the catalogue's tags are " + ", ".join(self.vocabulary.ids)
            ) from None

    def _predicate(self, filters: Filters, query_scores: Vector | None) -> _Predicate:
        thresholds = self.store.thresholds
        needs: list[tuple[list[int], float]] = []
        for name in filters.tags:
            columns = self._tag_columns(name)
            floor = filters.min_score
            if floor is None:
                floor = min(thresholds[i] for i in columns) if thresholds else 0.5
            needs.append((columns, floor))
        same: list[tuple[list[int], int]] = []
        for category in filters.taxonomy:
            columns = [i for i, tag in enumerate(self.tags) if tag.category == category]
            if category not in CATEGORIES or not columns:
                raise BadFilterError(
                    f"unknown category {category!r}; use one of {', '.join(CATEGORIES)}"
                )
            if query_scores is None:
                raise BadFilterError("a taxonomy filter needs the query's scores")
            same.append((columns, columns[int(np.argmax(query_scores[columns]))]))
        return _Predicate(needs, same)

    def similar(
        self,
        embedding: Vector,
        *,
        top: int,
        filters: Filters = Filters(),
        query_scores: Vector | None = None,
        exclude: int | None = None,
    ) -> list[Match]:
        """The `top` tracks nearest to `embedding` that pass `filters`, nearest first."""
        predicate = self._predicate(filters, query_scores)
        total = len(self.index)
        want = top + (exclude is not None)
        count = want if predicate.empty else 4 * want
        while True:
            neighbours = [(i, s) for i, s in self.index.search(embedding, count) if i != exclude]
            tracks = self.store.tracks([i for i, _ in neighbours])
            matches = [
                Match(tracks[i], s, self._top_tags(tracks[i].scores))
                for i, s in neighbours
                if i in tracks and predicate(tracks[i].scores)
            ]
            if len(matches) >= top or count >= total:
                return matches[:top]
            count *= 4

    def similar_to_track(
        self, track_id: int, *, top: int, filters: Filters = Filters()
    ) -> tuple[Track, list[Match]]:
        track = self.track(track_id)
        matches = self.similar(
            track.embedding, top=top, filters=filters, query_scores=track.scores, exclude=track_id
        )
        return track, matches

    def _top_tags(self, scores: Vector, count: int = 5) -> list[tuple[str, float]]:
        """The best tags by id, each synonym group once in a multi-vocabulary catalogue."""
        vocabulary = self.vocabulary
        order = top_indices(
            torch.from_numpy(np.asarray(scores, dtype=np.float32)),
            vocabulary.tags,
            count,
            one_per_group=vocabulary.default_synonyms == "one",
        )
        return [(vocabulary.ids[i], float(scores[i])) for i in order]


@dataclass(frozen=True)
class _Predicate:
    needs: Sequence[tuple[list[int], float]]
    same: Sequence[tuple[list[int], int]]

    @property
    def empty(self) -> bool:
        return not self.needs and not self.same

    def __call__(self, scores: Vector) -> bool:
        for columns, floor in self.needs:
            if float(scores[columns].max()) < floor:
                return False
        return all(columns[int(np.argmax(scores[columns]))] == best for columns, best in self.same)
