"""The default model's report figures: agreement with the teacher and instrument AUC on renders."""

from __future__ import annotations

import math

import numpy as np
import pytest

from model.zoo import build_model
from training.distill.data import Split
from training.distill.report import (
    INSTRUMENT_TAGS,
    agreement_table,
    instrument_auc,
    windows_per_second,
)

N_TAGS = 50
GUITAR, CLASSICAL, PIANO = 0, 1, 9  # columns in MagnaTagATune's tag order


def split(teacher: np.ndarray, labels: np.ndarray, kinds: list[str]) -> Split:
    n = len(teacher)
    return Split(
        windows=np.zeros((n, 8), dtype=np.int16),
        teacher=teacher.astype(np.float32),
        labels=labels.astype(np.int8),
        source_ids=np.array([f"s{i}" for i in range(n)]),
        kinds=np.array(kinds),
    )


def test_instrument_tags_are_the_twelve_mtat_instruments() -> None:
    assert INSTRUMENT_TAGS == [
        "guitar",
        "strings",
        "drums",
        "piano",
        "violin",
        "synth",
        "harpsichord",
        "flute",
        "sitar",
        "solo",
        "harp",
        "cello",
    ]


def test_agreement_counts_only_tags_the_teacher_marks_ten_times() -> None:
    teacher = np.zeros((20, N_TAGS))
    teacher[:10, GUITAR] = 0.9  # 10 teacher positives: measured
    teacher[:9, CLASSICAL] = 0.9  # 9: below the minimum, left out
    scores = np.zeros((20, N_TAGS), dtype=np.float32)
    scores[:10, GUITAR] = 0.8
    roc, names = agreement_table(split(teacher, -np.ones((20, N_TAGS)), ["music"] * 20), scores)
    assert names == ["guitar"]
    assert roc == 1.0


def test_agreement_is_nan_when_no_tag_can_be_measured() -> None:
    teacher = np.zeros((4, N_TAGS))
    roc, names = agreement_table(split(teacher, -np.ones((4, N_TAGS)), ["music"] * 4), teacher)
    assert names == []
    assert math.isnan(roc)


def test_instrument_auc_uses_ground_truth_of_renders_only() -> None:
    labels = -np.ones((6, N_TAGS))
    labels[:4, PIANO] = [1, 1, 0, 0]  # known on the renders; the music rows stay unknown
    kinds = ["render"] * 4 + ["music"] * 2
    scores = np.zeros((6, N_TAGS), dtype=np.float32)
    scores[:4, PIANO] = [0.2, 0.9, 0.1, 0.3]  # one positive ranked below a negative
    roc, names = instrument_auc(split(np.zeros((6, N_TAGS)), labels, kinds), scores)
    assert names == ["piano"]
    assert roc == pytest.approx(0.75)


def test_throughput_is_positive_windows_per_second() -> None:
    assert windows_per_second(build_model("q2l-small").eval(), batch_size=1, repeats=1) > 0
