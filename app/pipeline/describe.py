"""From window scores to what both front ends report: track scores, top-k tags with their
thresholds, window times and the container's name.

The service turns these into its response models (`app.service.schemas`), `tagger tag` into
rounded JSON records (`app.cli.output`); the choices themselves (mean aggregation, ties, which
window spans which seconds) are made here once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from model.inference import aggregate, window_starts
from model.tags import Tag


def format_name(container: str) -> str:
    """FFmpeg names demuxers by families ("mov,mp4,m4a,3gp,3g2,mj2"); report one plain name."""
    names = container.split(",")
    return "mp4" if "mp4" in names else names[0]


def track_scores(window_scores: Tensor) -> Tensor:
    """Track-level scores: the mean over windows, (N, C) -> (C,)."""
    return aggregate(window_scores)


def decision_thresholds(checkpoint_thresholds: Tensor, override: float | None) -> Tensor:
    """The per-tag thresholds to decide with: the checkpoint's, or one value for every tag."""
    if override is None:
        return checkpoint_thresholds
    return torch.full_like(checkpoint_thresholds, override)


def best_indices(scores: Tensor, top_k: int) -> list[int]:
    """Indices of the `top_k` highest scores, best first; ties keep vocabulary order."""
    return torch.argsort(scores, descending=True, stable=True)[:top_k].tolist()


@dataclass(frozen=True)
class TagDecision:
    """One tag of a top-k list: its score (full float precision) and its threshold decision."""

    tag: Tag
    score: float
    threshold: float
    passes_threshold: bool


def top_tags(
    scores: Tensor, tags: Sequence[Tag], thresholds: Tensor, top_k: int
) -> list[TagDecision]:
    """The `top_k` best tags of (n_tags,) `scores`, best first."""
    return [
        TagDecision(
            tag=tags[i],
            score=float(scores[i]),
            threshold=float(thresholds[i]),
            passes_threshold=bool(scores[i] >= thresholds[i]),
        )
        for i in best_indices(scores, top_k)
    ]


def window_times(
    n_samples: int, window_samples: int, sample_rate: int
) -> list[tuple[float, float]]:
    """(start, end) seconds of each window of a track, the last one clipped to its length."""
    end = max(n_samples, 1)
    return [
        (start / sample_rate, min(start + window_samples, end) / sample_rate)
        for start in window_starts(n_samples, window_samples)
    ]
