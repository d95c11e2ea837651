"""What tagging one file produced, and the record both batch engines write for it.

`tagger tag` (`app.cli`) and the Ray Data engine (`app.scale`) both turn a `FileResult` into
the same JSON object with `Describer.record`: the service's field names (`tag`, the tag's id,
`score`, `category`, `synonym_group`, `taxonomy` for a multi-vocabulary model, `threshold`,
`passes_threshold`; segments with `start`, `end`, `scores` keyed by tag id; `embedding` when
asked for), plus `file`, `model_id`, and `error` for a file that could not be tagged. Which tags
a record holds (a taxonomy, one per synonym group) is `app.pipeline.vocabulary`'s rule.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from app.pipeline.describe import format_name, top_indices, top_tags
from app.pipeline.vocabulary import tag_fields
from model.tags import Tag

__all__ = ["DIGITS", "EMBEDDING_DIGITS", "Describer", "FileResult", "rounded"]

DIGITS = 5  # scores are rounded: more digits than the model's own precision only cost bytes


@dataclass(frozen=True)
class FileResult:
    """What tagging one file produced.

    Attributes:
        path: The file as named on the command line or found in a folder.
        error: Why the file was not tagged, or None.
        duration_seconds: Length of the decoded audio.
        container: The container the decoder recognised (FFmpeg's name, e.g. "ogg").
        track_scores: (n_tags,) mean of the window probabilities.
        window_scores: (windows, n_tags) probabilities.
        window_times: (start, end) seconds of each window.
        embedding: (D,) the track's L2-normalised embedding, when the model call returned one.
        window_embeddings: (windows, D) each window's embedding, likewise.
    """

    path: str
    error: str | None = None
    duration_seconds: float = 0.0
    container: str = ""
    track_scores: Tensor | None = None
    window_scores: Tensor | None = None
    window_times: list[tuple[float, float]] = field(default_factory=list)
    embedding: Tensor | None = None
    window_embeddings: Tensor | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class Describer:
    """Turns model scores into tag lists and records, as the service describes a response.

    Attributes:
        model_id: Preset and checkpoint digest prefix, written into every record.
        tags: The checkpoint's vocabulary, one per model output.
        thresholds: (n_tags,) decision thresholds (the checkpoint's, or one given value).
        top_k: Tags per file (and per window in segments), best first.
        segments: Whether records carry every window's scores.
        window_seconds: Length of one analysis window.
        embedding: The embedding's kind (e.g. "backbone-mean-max") when records carry the
            track's embedding (and each segment's), else None.
        columns: The outputs records cover (a taxonomy's, `Vocabulary.select`), None for all.
        one_per_group: Whether top-k lists each synonym group once (`Vocabulary.synonyms`).
    """

    model_id: str
    tags: tuple[Tag, ...]
    thresholds: Tensor
    top_k: int
    segments: bool
    window_seconds: float
    embedding: str | None = None
    columns: tuple[int, ...] | None = None
    one_per_group: bool = False

    @property
    def selected(self) -> tuple[int, ...]:
        return tuple(range(len(self.tags))) if self.columns is None else self.columns

    @property
    def tag_names(self) -> list[str]:
        """The ids of the tags records cover, in model order (CSV columns, segment keys)."""
        return [self.tags[i].id for i in self.selected]

    def selected_scores(self, scores: Tensor) -> list[float]:
        """(n_tags,) `scores` of the covered tags, in `tag_names` order."""
        values = scores.tolist()
        return [values[i] for i in self.selected]

    def top_ids(self, scores: Tensor) -> list[str]:
        indices = top_indices(
            scores, self.tags, self.top_k, among=self.columns, one_per_group=self.one_per_group
        )
        return [self.tags[i].id for i in indices]

    def top_tags(self, scores: Tensor) -> list[dict[str, Any]]:
        decisions = top_tags(
            scores,
            self.tags,
            self.thresholds,
            self.top_k,
            among=self.columns,
            one_per_group=self.one_per_group,
        )
        return [
            tag_fields(
                decision.tag,
                score=round(decision.score, DIGITS),
                threshold=round(decision.threshold, DIGITS),
                passes_threshold=decision.passes_threshold,
            )
            for decision in decisions
        ]

    def record(self, result: FileResult) -> dict[str, Any]:
        """The JSON object of one file."""
        if not result.ok or result.track_scores is None or result.window_scores is None:
            return {"file": result.path, "model_id": self.model_id, "error": result.error}
        record: dict[str, Any] = {
            "file": result.path,
            "model_id": self.model_id,
            "duration_seconds": round(result.duration_seconds, 3),
            "windows": int(result.window_scores.shape[0]),
            "window_seconds": round(self.window_seconds, 5),
            "format": format_name(result.container),
            "tags": self.top_tags(result.track_scores),
        }
        if self.embedding is not None and result.embedding is not None:
            record["embedding"] = {
                "kind": self.embedding,
                "dim": int(result.embedding.shape[0]),
                "vector": rounded(result.embedding),
            }
        if self.segments:
            names = self.tag_names
            record["segments"] = [
                {
                    "start": round(start, 3),
                    "end": round(end, 3),
                    "scores": {
                        n: round(s, DIGITS)
                        for n, s in zip(names, self.selected_scores(row), strict=True)
                    },
                }
                for (start, end), row in zip(result.window_times, result.window_scores, strict=True)
            ]
            if self.embedding is not None and result.window_embeddings is not None:
                for segment, vector in zip(
                    record["segments"], result.window_embeddings, strict=True
                ):
                    segment["embedding"] = rounded(vector)
        return record


EMBEDDING_DIGITS = 6


def rounded(vector: Tensor) -> list[float]:
    return [round(value, EMBEDDING_DIGITS) for value in vector.tolist()]
