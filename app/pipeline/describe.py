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


def top_indices(
    scores: Tensor,
    tags: Sequence[Tag],
    top_k: int,
    *,
    among: Sequence[int] | None = None,
    one_per_group: bool = False,
) -> list[int]:
    """Output indices of the `top_k` best tags of (n_tags,) `scores`, best first.

    Args:
        among: The outputs to choose from (a taxonomy's), or None for all.
        one_per_group: List each synonym group once, by its best-scoring member (the first in
            vocabulary order on a tie); see app.pipeline.vocabulary.
    """
    order = best_indices(scores, len(tags))
    if among is not None:
        allowed = set(among)
        order = [i for i in order if i in allowed]
    if not one_per_group:
        return order[:top_k]
    chosen: list[int] = []
    seen: set[str] = set()
    for i in order:
        if tags[i].synonym_group not in seen:
            seen.add(tags[i].synonym_group)
            chosen.append(i)
            if len(chosen) == top_k:
                break
    return chosen


def top_tags(
    scores: Tensor,
    tags: Sequence[Tag],
    thresholds: Tensor,
    top_k: int,
    *,
    among: Sequence[int] | None = None,
    one_per_group: bool = False,
) -> list[TagDecision]:
    """The `top_k` best tags of (n_tags,) `scores`, best first (arguments as `top_indices`);
    each keeps its own threshold decision."""
    return [
        TagDecision(
            tag=tags[i],
            score=float(scores[i]),
            threshold=float(thresholds[i]),
            passes_threshold=bool(scores[i] >= thresholds[i]),
        )
        for i in top_indices(scores, tags, top_k, among=among, one_per_group=one_per_group)
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
