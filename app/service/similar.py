"""Similarity search in the service: the catalogue of `TAGGER_CATALOG`, opened read-only.

The catalogue is opened when the service starts, so a missing, damaged or foreign file stops
the start-up with a message naming it, not the first query. Queries embed their audio through
`TaggingService` (the same decode, batcher and model call as `POST /tag`), compare the
embedding's identity with the catalogue's (another model answers 409 naming both) and search
the index, which follows what `tagger index` commits meanwhile (`app.catalog.index`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from app.catalog.search import (
    BadFilterError,
    Catalog,
    EmptyCatalogError,
    Filters,
    Match,
    UnknownTrackError,
)
from app.catalog.store import CatalogError, CatalogStore, ModelMismatchError, Track
from app.service.problems import BAD_REQUEST, NOT_FOUND, ProblemError, ProblemKind
from app.service.schemas import Embedding
from app.service.similar_schemas import (
    CatalogInfo,
    CatalogTrack,
    SimilarResponse,
    SimilarTrack,
    TrackTag,
)
from app.service.tagging import TaggingService, TagOptions
from model.embedding import EmbeddingSpec

logger = logging.getLogger("tagger.similar")

MODEL_MISMATCH = ProblemKind("model-mismatch", 409, "Catalogue built by another model", "bad_input")
NO_CATALOG = ProblemKind("no-catalog", 404, "No catalogue", "not_found")


class SimilarService:
    """The catalogue behind `/similar` and `/catalog/...`.

    Raises:
        CatalogError: the file is missing, not SQLite, damaged or not a catalogue.
    """

    def __init__(self, path: Path, tagging: TaggingService) -> None:
        self.tagging = tagging
        self.store = CatalogStore(path, readonly=True)
        self.catalog = Catalog(self.store)
        # One connection, many request threads: searches take turns (each is milliseconds).
        self._lock = threading.Lock()
        spec = self.catalog.spec
        logger.info(
            "catalogue %s: %d tracks, index %s, built by %s",
            path,
            len(self.store),
            self.catalog.index.kind,
            "nothing yet" if spec is None else spec.model_id,
        )
        if spec is not None and spec != tagging.embedding_spec:
            logger.warning(
                "the catalogue was built by %s, the service runs %s: queries will be refused",
                spec.model_id,
                tagging.model_id,
            )

    def close(self) -> None:
        self.store.close()

    # ----- descriptions --------------------------------------------------------------------

    def info(self) -> CatalogInfo:
        with self._lock:
            self.catalog.index.refresh()
            spec = self.catalog.spec
            return CatalogInfo(
                tracks=len(self.store),
                model_id=None if spec is None else spec.model_id,
                embedding_kind=None if spec is None else spec.kind,
                embedding_dim=None if spec is None else spec.dim,
                index=self.catalog.index.kind,
                compatible=spec is None or spec == self.tagging.embedding_spec,
            )

    def _describe(self, track: Track) -> CatalogTrack:
        return CatalogTrack(**self._fields(track, self.catalog._top_tags(track.scores)))

    def _fields(self, track: Track, tags: list[tuple[str, float]]) -> dict[str, Any]:
        readable = os.access(track.path, os.R_OK)
        return {
            "id": track.id,
            "file": track.path,
            "duration_seconds": track.duration,
            "top_tags": [TrackTag(tag=t, score=min(max(s, 0.0), 1.0)) for t, s in tags],
            "audio_url": f"/catalog/tracks/{track.id}/audio" if readable else None,
        }

    def _result(self, match: Match) -> SimilarTrack:
        similarity = min(match.similarity, 1.0)
        return SimilarTrack(**self._fields(match.track, match.top_tags), similarity=similarity)

    # ----- queries -------------------------------------------------------------------------

    def track(self, track_id: int) -> CatalogTrack:
        with self._lock, _problems():
            return self._describe(self.catalog.track(track_id))

    def audio_path(self, track_id: int) -> Path:
        track = self.track(track_id)
        if track.audio_url is None:
            raise ProblemError(
                NOT_FOUND, f"track {track_id}'s file is not readable by the service: {track.file}"
            )
        return Path(track.file)

    async def similar_to_track(self, track_id: int, top: int, filters: Filters) -> SimilarResponse:
        def search() -> SimilarResponse:
            with self._lock, _problems():
                self.catalog.check_model(self.tagging.embedding_spec)
                track, matches = self.catalog.similar_to_track(track_id, top=top, filters=filters)
                return SimilarResponse(
                    model_id=self.tagging.model_id,
                    query=self._describe(track),
                    results=[self._result(m) for m in matches],
                )

        return await asyncio.to_thread(search)

    async def similar_to_audio(
        self,
        data: bytes | None,
        url: str | None,
        top: int,
        filters: Filters,
        *,
        started: float,
    ) -> SimilarResponse:
        with self._lock, _problems():  # refuse before decoding anything
            self.catalog.check_model(self.tagging.embedding_spec)
        n_tags = len(self.tagging.tags)
        options = TagOptions(top_k=n_tags, embedding=True, synonyms="all")  # every tag's score
        if url is not None:
            tagged = await self.tagging.tag_url(url, options, started=started)
        else:
            tagged = await self.tagging.tag_audio(data or b"", options, started=started)
        assert tagged.embedding is not None
        scores = {t.tag: t.score for t in tagged.tags}
        return await self.similar_to_vector(tagged.embedding, scores, top, filters)

    async def similar_to_vector(
        self, embedding: Embedding, scores: dict[str, float] | None, top: int, filters: Filters
    ) -> SimilarResponse:
        """Search with an embedding (and the query's tag scores, for taxonomy filters)."""
        spec = EmbeddingSpec(embedding.model_id, embedding.kind, embedding.dim)
        vector = np.array(embedding.vector, dtype=np.float32)
        if vector.shape != (spec.dim,) or not np.isfinite(vector).all():
            raise ProblemError(
                BAD_REQUEST, f"the embedding must hold {spec.dim} finite numbers (its dim)"
            )
        query_scores = None
        if scores is not None:
            names = self.tagging.vocabulary.ids
            missing = [name for name in names if name not in scores]
            if missing:
                raise ProblemError(BAD_REQUEST, f"scores lack tags: {', '.join(missing[:5])}")
            query_scores = np.array([scores[name] for name in names], dtype=np.float32)

        def search() -> SimilarResponse:
            with self._lock, _problems():
                self.catalog.check_model(spec)
                matches = self.catalog.similar(
                    vector, top=top, filters=filters, query_scores=query_scores
                )
                return SimilarResponse(
                    model_id=spec.model_id, results=[self._result(m) for m in matches]
                )

        return await asyncio.to_thread(search)


class _problems:  # noqa: N801 - used as `with _problems():`
    """Catalogue errors as problem details."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, error: BaseException | None, traceback: object) -> None:
        if error is None:
            return
        if isinstance(error, ModelMismatchError):
            raise ProblemError(
                MODEL_MISMATCH,
                str(error),
                extensions={
                    "catalog_model_id": error.catalog.model_id,
                    "query_model_id": error.query.model_id,
                },
            ) from None
        if isinstance(error, UnknownTrackError):
            raise ProblemError(NOT_FOUND, str(error)) from None
        if isinstance(error, BadFilterError):
            extensions = {"candidates": list(error.candidates)} if error.candidates else None
            raise ProblemError(BAD_REQUEST, str(error), extensions=extensions) from None
        if isinstance(error, EmptyCatalogError):
            raise ProblemError(NOT_FOUND, str(error)) from None
        if isinstance(error, CatalogError):
            raise ProblemError(BAD_REQUEST, str(error)) from None
