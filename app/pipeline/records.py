"""What tagging one file produced, and the record both batch engines write for it.

`tagger tag` (`app.cli`) and the Ray Data engine (`app.scale`) both turn a `FileResult` into
the same JSON object with `Describer.record`: the service's field names (`tag`, `score`,
`category`, `synonym_group`, `threshold`, `passes_threshold`; segments with `start`, `end`,
`scores`; `embedding` when asked for), plus `file`, `model_id`, and `error` for a file that
could not be tagged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from app.pipeline.describe import format_name, top_tags
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
    """

    model_id: str
    tags: tuple[Tag, ...]
    thresholds: Tensor
    top_k: int
    segments: bool
    window_seconds: float
    embedding: str | None = None

    @property
    def tag_names(self) -> list[str]:
        return [tag.name for tag in self.tags]

    def top_tags(self, scores: Tensor) -> list[dict[str, Any]]:
        return [
            {
                "tag": decision.tag.name,
                "score": round(decision.score, DIGITS),
                "category": decision.tag.category,
                "synonym_group": decision.tag.synonym_group,
                "threshold": round(decision.threshold, DIGITS),
                "passes_threshold": decision.passes_threshold,
            }
            for decision in top_tags(scores, self.tags, self.thresholds, self.top_k)
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
                        n: round(s, DIGITS) for n, s in zip(names, row.tolist(), strict=True)
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
