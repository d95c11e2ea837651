"""Tagging metrics (Won et al.'s protocol) and per-tag threshold calibration, with scikit-learn.

Macro ROC-AUC and macro PR-AUC (average precision) over tags. A tag with no positive or no
negative clip in the evaluated set has no defined ROC-AUC (sklearn raises "Only one class present
in y_true", minzwon#15): such tags are left out of both macro averages and listed instead.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score


@dataclass(frozen=True)
class TagScore:
    """One tag's result; the AUCs are None when the tag was skipped."""

    name: str
    positives: int
    negatives: int
    roc_auc: float | None
    pr_auc: float | None


@dataclass(frozen=True)
class Metrics:
    """Macro metrics of one evaluated set.

    Attributes:
        roc_auc: Macro ROC-AUC over the evaluated tags (None if no tag could be evaluated).
        pr_auc: Macro PR-AUC (average precision) over the same tags.
        n_clips: Clips evaluated.
        skipped: Tags left out: no positive or no negative clip.
        per_tag: Every tag, in vocabulary order.
        loss: Mean binary cross-entropy over crops, when the caller computed it.
    """

    roc_auc: float | None
    pr_auc: float | None
    n_clips: int
    skipped: tuple[str, ...]
    per_tag: tuple[TagScore, ...]
    loss: float | None = None

    def summary(self) -> dict[str, Any]:
        """Headline numbers for logs and checkpoint provenance."""
        return {
            "roc_auc": self.roc_auc,
            "pr_auc": self.pr_auc,
            "loss": self.loss,
            "n_clips": self.n_clips,
            "n_tags_evaluated": len(self.per_tag) - len(self.skipped),
            "skipped_tags": list(self.skipped),
        }

    def to_dict(self) -> dict[str, Any]:
        return {**self.summary(), "per_tag": [asdict(tag) for tag in self.per_tag]}


def tagging_metrics(
    labels: np.ndarray,
    scores: np.ndarray,
    tag_names: Sequence[str],
    *,
    loss: float | None = None,
) -> Metrics:
    """Macro ROC-AUC and PR-AUC of `scores` against 0/1 `labels`, both (N, C).

    Never raises for degenerate tags: they are skipped and listed.
    """
    labels = np.asarray(labels)
    scores = np.asarray(scores, dtype=np.float64)
    if labels.shape != scores.shape or labels.ndim != 2 or labels.shape[1] != len(tag_names):
        raise ValueError(
            f"labels {labels.shape} and scores {scores.shape} must both be (N, {len(tag_names)})"
        )
    positives = (labels > 0).sum(axis=0)
    negatives = labels.shape[0] - positives
    keep = (positives > 0) & (negatives > 0)
    per_tag = []
    for k, name in enumerate(tag_names):
        roc = pr = None
        if keep[k]:
            roc = float(roc_auc_score(labels[:, k], scores[:, k]))
            pr = float(average_precision_score(labels[:, k], scores[:, k]))
        per_tag.append(TagScore(name, int(positives[k]), int(negatives[k]), roc, pr))
    macro_roc = macro_pr = None
    if keep.any():
        macro_roc = float(roc_auc_score(labels[:, keep], scores[:, keep], average="macro"))
        macro_pr = float(average_precision_score(labels[:, keep], scores[:, keep], average="macro"))
    skipped = tuple(name for name, kept in zip(tag_names, keep, strict=True) if not kept)
    return Metrics(macro_roc, macro_pr, labels.shape[0], skipped, tuple(per_tag), loss)


def calibrate_thresholds(
    labels: np.ndarray, scores: np.ndarray, *, default: float = 0.5, min_positives: int = 1
) -> tuple[list[float], list[int]]:
    """Per tag, the score threshold that maximises F1 (a tag is on when score >= threshold).

    Tags with fewer than `min_positives` positive examples keep `default`: an F1-optimal cut
    over a handful of positives is noise (the default model's report bootstraps how stable the
    calibrated ones are).

    Returns:
        (thresholds, indices of the tags left at the default)
    """
    labels = np.asarray(labels)
    scores = np.asarray(scores, dtype=np.float64)
    thresholds: list[float] = []
    uncalibrated: list[int] = []
    for k in range(labels.shape[1]):
        if (labels[:, k] > 0).sum() < max(1, min_positives):
            thresholds.append(default)
            uncalibrated.append(k)
            continue
        precision, recall, cuts = precision_recall_curve(labels[:, k], scores[:, k])
        # The curve's last point (precision 1, recall 0) has no threshold.
        precision, recall = precision[:-1], recall[:-1]
        with np.errstate(divide="ignore", invalid="ignore"):
            f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0)
        thresholds.append(float(np.clip(cuts[int(np.argmax(f1))], 0.0, 1.0)))
    return thresholds, uncalibrated


def per_tag_csv(metrics: Metrics) -> str:
    """The per-tag table as CSV text: tag, positives, negatives, roc_auc, pr_auc."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["tag", "positives", "negatives", "roc_auc", "pr_auc"])
    for tag in metrics.per_tag:
        writer.writerow(
            [
                tag.name,
                tag.positives,
                tag.negatives,
                "" if tag.roc_auc is None else f"{tag.roc_auc:.4f}",
                "" if tag.pr_auc is None else f"{tag.pr_auc:.4f}",
            ]
        )
    return buffer.getvalue()


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def per_tag_markdown(metrics: Metrics) -> str:
    """The per-tag table as Markdown, sorted by PR-AUC (skipped tags last)."""
    rows = sorted(metrics.per_tag, key=lambda t: 1.0 if t.pr_auc is None else -t.pr_auc)
    lines = ["| tag | positives | ROC-AUC | PR-AUC |", "|---|---:|---:|---:|"]
    lines += [f"| {t.name} | {t.positives} | {_fmt(t.roc_auc)} | {_fmt(t.pr_auc)} |" for t in rows]
    return "\n".join(lines) + "\n"


def format_summary(metrics: Metrics, split: str) -> str:
    """One paragraph for the terminal."""
    text = (
        f"{split}: ROC-AUC {_fmt(metrics.roc_auc)}, PR-AUC {_fmt(metrics.pr_auc)} "
        f"(macro over {len(metrics.per_tag) - len(metrics.skipped)} tags, {metrics.n_clips} clips)"
    )
    if metrics.loss is not None:
        text += f", loss {metrics.loss:.4f}"
    if metrics.skipped:
        text += f"; skipped (no positive or no negative): {', '.join(metrics.skipped)}"
    return text


def write_report(directory: str | Path, split: str, metrics: Metrics) -> None:
    """`<split>_metrics.json`, `<split>_per_tag.csv` and `<split>_per_tag.md` in `directory`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{split}_metrics.json").write_text(json.dumps(metrics.to_dict(), indent=2) + "\n")
    (directory / f"{split}_per_tag.csv").write_text(per_tag_csv(metrics))
    (directory / f"{split}_per_tag.md").write_text(per_tag_markdown(metrics))


AGREEMENT_MIN_POSITIVES = 10  # a distilled model's agreement averages over tags this frequent


def frequent_tag_auc(
    labels: np.ndarray,
    scores: np.ndarray,
    tag_names: Sequence[str],
    min_positives: int = AGREEMENT_MIN_POSITIVES,
) -> tuple[float | None, list[str]]:
    """Macro ROC-AUC over the tags with at least `min_positives` positives, and those tags.

    Against a teacher's labels this is the agreement a distilled model is selected by: rare
    tags' AUCs rest on a handful of clips and would make the average noise.
    """
    keep = (np.asarray(labels) > 0).sum(axis=0) >= min_positives
    names = [n for n, k in zip(tag_names, keep, strict=True) if k]
    return tagging_metrics(labels[:, keep], scores[:, keep], names).roc_auc, names
