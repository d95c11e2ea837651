"""The regression gate: is a candidate default model worse than the current one beyond noise?

Each comparison is a macro ROC-AUC measured for the candidate and a reference model on the same
held-out rows, and the difference (candidate - reference) with a paired bootstrap interval:
every round resamples whole tracks with replacement (a track's windows move together) and
recomputes both models' macro AUC on the same resample. The candidate regresses on a measure
when even the upper end of the 95 % interval of the difference is below 0; the gate passes when
it regresses on none.

The tags a measure averages over are fixed on the full data (as the report chooses them); a tag
that a resample leaves with only one class is skipped there, for both models alike. ROC-AUC is
computed from weights (how often each row was drawn), which is the AUC of the resampled rows
without building them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

BOOTSTRAP_ROUNDS = 1000
INTERVAL = (2.5, 97.5)  # percentiles: a 95 % interval


def weighted_auc(labels: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> float | None:
    """ROC-AUC of `scores` for 0/1 `labels`, each row counted `weights` times (ties count
    half); None without a positive and a negative of positive weight."""
    labels = np.asarray(labels)
    weights = np.asarray(weights, dtype=np.float64)
    positive = (labels == 1) * weights
    negative = (labels == 0) * weights
    total_positive, total_negative = positive.sum(), negative.sum()
    if total_positive <= 0 or total_negative <= 0:
        return None
    values, owner = np.unique(np.asarray(scores, dtype=np.float64), return_inverse=True)
    positive_at = np.bincount(owner, weights=positive, minlength=len(values))
    negative_at = np.bincount(owner, weights=negative, minlength=len(values))
    negative_below = np.cumsum(negative_at) - negative_at
    wins = positive_at * (negative_below + 0.5 * negative_at)
    return float(wins.sum() / (total_positive * total_negative))


def macro_auc(
    labels: np.ndarray, scores: np.ndarray, weights: np.ndarray | None = None
) -> float | None:
    """Mean ROC-AUC over the columns of (N, C) `labels` (1, 0, or -1 for unknown) and `scores`,
    each tag on its known rows; tags without both classes are skipped."""
    weights = np.ones(len(labels)) if weights is None else weights
    values = []
    for column in range(labels.shape[1]):
        known = labels[:, column] >= 0
        value = weighted_auc(labels[known, column], scores[known, column], weights[known])
        if value is not None:
            values.append(value)
    return float(np.mean(values)) if values else None


def _paired_macro(
    labels: np.ndarray, candidate: np.ndarray, reference: np.ndarray, weights: np.ndarray
) -> tuple[float, float] | None:
    """Both models' macro AUC over the tags that have both classes under `weights`."""
    pairs = []
    for column in range(labels.shape[1]):
        known = labels[:, column] >= 0
        column_labels, column_weights = labels[known, column], weights[known]
        a = weighted_auc(column_labels, candidate[known, column], column_weights)
        b = weighted_auc(column_labels, reference[known, column], column_weights)
        if a is not None and b is not None:
            pairs.append((a, b))
    if not pairs:
        return None
    a_mean, b_mean = np.mean(pairs, axis=0)
    return float(a_mean), float(b_mean)


@dataclass(frozen=True)
class Comparison:
    """One measure of the candidate against one reference model.

    Attributes:
        measure: What is compared (e.g. "mtt track agreement").
        reference: The reference model's name.
        candidate_value, reference_value: Macro ROC-AUC of each on the full data.
        difference: candidate_value - reference_value.
        low, high: The bootstrap interval of the difference.
        tags: How many tags the measure averages over.
        tracks: How many tracks were resampled.
    """

    measure: str
    reference: str
    candidate_value: float
    reference_value: float
    difference: float
    low: float
    high: float
    tags: int
    tracks: int

    @property
    def regression(self) -> bool:
        """Worse beyond noise: the whole interval of the difference lies below 0."""
        return self.high < 0

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "regression": self.regression}


def compare(
    measure: str,
    reference: str,
    labels: np.ndarray,
    candidate: np.ndarray,
    reference_scores: np.ndarray,
    tracks: np.ndarray,
    *,
    rounds: int = BOOTSTRAP_ROUNDS,
    seed: int = 0,
) -> Comparison:
    """Paired bootstrap of candidate - reference macro ROC-AUC, resampling tracks.

    Args:
        labels: (N, C) 1/0 truth or teacher labels, -1 where unknown; only the tags to average
            over (chosen on the full data by the caller).
        candidate, reference_scores: (N, C) each model's scores on the same rows.
        tracks: (N,) the track each row belongs to (a row per track for track-level measures).

    Raises:
        ValueError: no tag has both classes on the full data.
    """
    track_ids, owner = np.unique(tracks, return_inverse=True)
    full = _paired_macro(labels, candidate, reference_scores, np.ones(len(labels)))
    if full is None:
        raise ValueError(f"{measure}: no tag has a positive and a negative row")
    rng = np.random.default_rng(seed)
    differences = []
    for _ in range(rounds):
        drawn = np.bincount(
            rng.integers(0, len(track_ids), len(track_ids)), minlength=len(track_ids)
        )
        pair = _paired_macro(labels, candidate, reference_scores, drawn[owner].astype(np.float64))
        if pair is not None:
            differences.append(pair[0] - pair[1])
    low, high = np.percentile(differences, INTERVAL)
    return Comparison(
        measure=measure,
        reference=reference,
        candidate_value=round(full[0], 4),
        reference_value=round(full[1], 4),
        difference=round(full[0] - full[1], 4),
        low=round(float(low), 4),
        high=round(float(high), 4),
        tags=labels.shape[1],
        tracks=len(track_ids),
    )


@dataclass(frozen=True)
class GateResult:
    """Every comparison made, and the measures that could not be made (no tag measurable on
    the held-out data): an unmeasured measure fails the gate, as nothing proves it did not
    regress."""

    comparisons: tuple[Comparison, ...]
    unmeasured: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return bool(self.comparisons) and not self.unmeasured and not self.regressions

    @property
    def regressions(self) -> list[Comparison]:
        return [c for c in self.comparisons if c.regression]

    def to_json(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "rule": "fail when the upper end of the 95 % paired bootstrap interval of "
            "candidate - reference (tracks resampled) is below 0 on any measure",
            "rounds": BOOTSTRAP_ROUNDS,
            "comparisons": [c.to_json() for c in self.comparisons],
            "unmeasured": list(self.unmeasured),
        }


def markdown(result: GateResult) -> list[str]:
    """The gate as a table, one row per comparison."""
    lines = [
        "| measure | reference | candidate | reference | difference | 95 % interval | tags | "
        "tracks | verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in result.comparisons:
        verdict = "**worse**" if c.regression else "ok"
        lines.append(
            f"| {c.measure} | {c.reference} | {c.candidate_value:.4f} | {c.reference_value:.4f} "
            f"| {c.difference:+.4f} | [{c.low:+.4f}, {c.high:+.4f}] | {c.tags} | {c.tracks} | "
            f"{verdict} |"
        )
    lines += [f"| {measure} | | | | | | | | **not measurable** |" for measure in result.unmeasured]
    return lines


def select_tags(labels: np.ndarray, minimum: int, *, negatives: bool = False) -> list[int]:
    """Columns with at least `minimum` positive (and, with `negatives`, negative) known rows."""
    positives = (labels == 1).sum(axis=0)
    if not negatives:
        return [k for k in range(labels.shape[1]) if positives[k] >= minimum]
    negative_counts = (labels == 0).sum(axis=0)
    return [
        k
        for k in range(labels.shape[1])
        if positives[k] >= minimum and negative_counts[k] >= minimum
    ]


def columns_of(tag_ids: Sequence[str], wanted: Sequence[str]) -> list[int]:
    return [tag_ids.index(tag) for tag in wanted]
