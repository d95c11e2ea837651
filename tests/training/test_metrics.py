"""Metrics on hand-made cases, degenerate tags, and threshold calibration."""

from __future__ import annotations

import numpy as np
import pytest

from training.metrics import (
    calibrate_thresholds,
    format_summary,
    per_tag_csv,
    per_tag_markdown,
    tagging_metrics,
)

TAGS = ("rock", "piano", "never", "always")


def _case() -> tuple[np.ndarray, np.ndarray]:
    """Four clips. rock: perfectly ranked. piano: one inverted pair of four.
    never: no positive. always: no negative."""
    labels = np.array(
        [
            [1, 1, 0, 1],
            [1, 0, 0, 1],
            [0, 1, 0, 1],
            [0, 0, 0, 1],
        ]
    )
    scores = np.array(
        [
            [0.9, 0.8, 0.1, 0.7],
            [0.8, 0.6, 0.2, 0.6],
            [0.2, 0.5, 0.3, 0.5],
            [0.1, 0.1, 0.4, 0.4],
        ]
    )
    return labels, scores


def test_hand_computed_values_and_skipped_tags() -> None:
    labels, scores = _case()
    metrics = tagging_metrics(labels, scores, TAGS)
    by_name = {tag.name: tag for tag in metrics.per_tag}
    assert by_name["rock"].roc_auc == pytest.approx(1.0)
    assert by_name["rock"].pr_auc == pytest.approx(1.0)
    # piano: positives score 0.8 and 0.5, negatives 0.6 and 0.1 -> 3 of 4 pairs ordered.
    assert by_name["piano"].roc_auc == pytest.approx(0.75)
    # Ranking 0.8(+) 0.6(-) 0.5(+) 0.1(-): precision at the two positives is 1 and 2/3.
    assert by_name["piano"].pr_auc == pytest.approx((1 + 2 / 3) / 2)
    assert metrics.skipped == ("never", "always")
    assert by_name["never"].roc_auc is None
    assert by_name["never"].positives == 0
    assert by_name["always"].pr_auc is None
    assert by_name["always"].negatives == 0
    assert metrics.roc_auc == pytest.approx((1.0 + 0.75) / 2)
    assert metrics.pr_auc == pytest.approx((1.0 + 5 / 6) / 2)
    assert metrics.n_clips == 4


def test_all_tags_degenerate_gives_none_not_a_crash() -> None:
    labels = np.zeros((3, 2), dtype=np.uint8)
    metrics = tagging_metrics(labels, np.full((3, 2), 0.5), ("a", "b"))
    assert metrics.roc_auc is None
    assert metrics.pr_auc is None
    assert metrics.skipped == ("a", "b")
    assert "n/a" in format_summary(metrics, "valid")


def test_shape_mismatch_is_refused() -> None:
    with pytest.raises(ValueError, match="must both be"):
        tagging_metrics(np.zeros((3, 2)), np.zeros((3, 3)), ("a", "b"))


def test_tables_list_every_tag() -> None:
    labels, scores = _case()
    metrics = tagging_metrics(labels, scores, TAGS)
    csv_lines = per_tag_csv(metrics).splitlines()
    assert csv_lines[0] == "tag,positives,negatives,roc_auc,pr_auc"
    assert csv_lines[1:] == [
        "rock,2,2,1.0000,1.0000",
        "piano,2,2,0.7500,0.8333",
        "never,0,4,,",
        "always,4,0,,",
    ]
    markdown = per_tag_markdown(metrics).splitlines()
    # Sorted by PR-AUC, skipped tags last.
    assert [line.split("|")[1].strip() for line in markdown[2:]] == list(TAGS)
    summary = format_summary(metrics, "test")
    assert "skipped (no positive or no negative): never, always" in summary


def test_thresholds_maximise_f1() -> None:
    labels = np.array([[1, 0], [1, 0], [0, 0], [1, 0], [0, 0]])
    scores = np.array([[0.9, 0.2], [0.7, 0.1], [0.6, 0.3], [0.4, 0.9], [0.2, 0.4]])
    thresholds, uncalibrated = calibrate_thresholds(labels, scores)
    # Cutting at 0.4 keeps all three positives and one negative: F1 = 6/7, the best possible.
    assert thresholds[0] == pytest.approx(0.4)
    assert thresholds[1] == 0.5
    assert uncalibrated == [1]
    predicted = scores[:, 0] >= thresholds[0]
    true_positives = int((predicted & (labels[:, 0] == 1)).sum())
    f1 = 2 * true_positives / (predicted.sum() + labels[:, 0].sum())
    assert f1 == pytest.approx(6 / 7)
