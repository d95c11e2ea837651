"""choose-teachers: one teacher or the mean of two per vocabulary, on validation truth."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tests.training.distill_fakes import N_TAGS, write_source
from training.distill.choose import MIN_TRUTH_WINDOWS, choose
from training.distill.teachers import TAG_IDS, needed_teachers

PIANO = TAG_IDS.index("mtt/piano")
N = 2 * MIN_TRUTH_WINDOWS  # half the windows have a piano, half do not


def _cache(root: Path, musicnn: np.ndarray, vgg: np.ndarray) -> Path:
    truth = np.full((N, N_TAGS), -1, dtype=np.int8)
    truth[:, PIANO] = [1] * MIN_TRUTH_WINDOWS + [0] * MIN_TRUTH_WINDOWS
    mtt, mtt_vgg = np.zeros((N, 50)), np.zeros((N, 50))
    mtt[:, PIANO], mtt_vgg[:, PIANO] = musicnn, vgg
    pcm = np.zeros((N, 8), dtype=np.int16)
    write_source(root / "src", pcm, mtt, truth, mtt_vgg)
    row = {"source_id": "src", "kind": "render", "path": "r.flac", "split": "valid"}
    (root / "index.jsonl").write_text(json.dumps(row) + "\n")
    return root


def test_the_mean_wins_when_the_teachers_err_on_different_windows(tmp_path: Path) -> None:
    # Positives 0.8, negatives 0.2, except that each teacher scores one positive 0.45 and one
    # negative 0.55, on different windows: alone, each ranks a negative above a positive; their
    # mean scores every positive >= 0.625 and every negative <= 0.375.
    musicnn = np.array([0.8] * 10 + [0.2] * 10)
    vgg = musicnn.copy()
    musicnn[0], musicnn[10] = 0.45, 0.55
    vgg[1], vgg[11] = 0.45, 0.55
    document = choose(_cache(tmp_path, musicnn, vgg))
    figures = document["figures"]["mtt"]
    assert figures["mean"]["per_tag"] == {"mtt/piano": 1.0}
    assert figures["mtt_musicnn"]["per_tag"]["mtt/piano"] < 1.0
    assert document["choices"]["mtt"] == "mean"
    assert document["described"]["mtt"] == "mean of MTT_musicnn and MTT_vgg"
    assert needed_teachers(document["choices"]) == ["mtt_musicnn", "mtt_vgg", "msd_musicnn"]


def test_a_better_single_teacher_beats_the_mean(tmp_path: Path) -> None:
    vgg = np.array([0.9] * 10 + [0.1] * 10)  # perfect
    musicnn = vgg[::-1].copy()  # exactly wrong: the mean is constant and ranks nothing
    document = choose(_cache(tmp_path, musicnn, vgg))
    assert document["choices"]["mtt"] == "mtt_vgg"
    assert document["figures"]["mtt"]["mtt_vgg"]["macro_roc_auc"] == 1.0
