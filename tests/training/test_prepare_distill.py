"""`prepare-distill`: the teacher-labelled distillation cache as a prepared dataset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from model.tags import MTAT_TAG_NAMES
from tests.training.distill_fakes import N_TAGS, write_choice, write_source
from training.cli import main
from training.data.distilled import prepare_distilled, window_labels
from training.data.store import DatasetError, PreparedDataset

WINDOW = 59049
GUITAR, CLASSICAL, TECHNO, PIANO = (
    MTAT_TAG_NAMES.index(t) for t in ("guitar", "classical", "techno", "piano")
)


def _write_cache(root: Path) -> dict[str, np.ndarray]:
    """Six sources (two per split), three windows each; returns each source's windows."""
    rng = np.random.default_rng(0)
    windows = {}
    rows = []
    for n, split in enumerate(["train", "train", "valid", "valid", "test", "test"]):
        source_id = f"src{n}"
        folder = root / source_id
        pcm = rng.integers(-3000, 3000, size=(3, WINDOW), dtype=np.int16)
        teacher = np.zeros((3, 50), dtype=np.float32)
        teacher[:, GUITAR] = [0.9, 0.1, 0.3]  # present in two windows of every source
        teacher[:, TECHNO] = 0.05 if n % 2 else 0.8  # only in even sources
        teacher[0, CLASSICAL] = 0.29  # just below the threshold
        truth = np.full((3, N_TAGS), -1, dtype=np.int8)
        if n % 2:
            truth[:, PIANO] = [1, 1, 0]  # a render: piano truth known
            truth[:, GUITAR] = 0  # ... and guitar known absent, overriding the teacher
        write_source(folder, pcm, teacher, truth)
        windows[source_id] = pcm
        kind = "render" if n % 2 else "music"
        rows.append(
            {
                "source_id": source_id,
                "kind": kind,
                "path": f"{kind}/{n}.ogg",
                "split": split,
                "n_windows": 3,
            }
        )
    (root / "index.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    write_choice(root)
    return windows


def test_labels_are_teacher_threshold_with_known_truth_first() -> None:
    teacher = np.array([[0.3, 0.29, 0.9]], dtype=np.float32)
    truth = np.array([[-1, 1, 0]], dtype=np.int8)
    assert window_labels(teacher, truth, 0.3).tolist() == [[1, 1, 0]]


def test_whole_cache(tmp_path: Path) -> None:
    windows = _write_cache(tmp_path / "cache")
    data = prepare_distilled(tmp_path / "cache", tmp_path / "out", min_positives=2)
    # guitar: 2 per music source, 0 in renders (truth); techno: 3 per even source; piano: 2 per
    # render. classical never reaches 0.3.
    assert data.tag_names == ("mtt/guitar", "mtt/techno", "mtt/piano")
    assert {s: len(data.split_indices(s)) for s in ("train", "valid", "test")} == {
        "train": 6,
        "valid": 6,
        "test": 6,
    }
    for clip in range(len(data)):
        source_id, row = str(data.keys[clip]).split("/")
        expected = windows[source_id][int(row)].astype(np.float32) / 32767
        np.testing.assert_array_equal(data.read(clip), expected)
        split = data.splits[clip]
        assert split == ["train", "train", "valid", "valid", "test", "test"][int(source_id[3:])]
    src1 = [i for i in range(len(data)) if str(data.keys[i]).startswith("src1/")]
    assert data.labels[src1].tolist() == [[0, 0, 1], [0, 0, 1], [0, 0, 0]]
    src0 = [i for i in range(len(data)) if str(data.keys[i]).startswith("src0/")]
    assert data.labels[src0].tolist() == [[1, 1, 0], [0, 1, 0], [1, 1, 0]]


def test_subsets_and_vocabulary_from_the_whole_cache(tmp_path: Path) -> None:
    _write_cache(tmp_path / "cache")
    args = ["prepare-distill", "--cache", str(tmp_path / "cache"), "--min-positives", "3"]
    args += ["--train-windows", "2", "--valid-windows", "4", "--seed", "1"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    a = PreparedDataset.open(tmp_path / "a")
    assert {s: len(a.split_indices(s)) for s in ("train", "valid", "test")} == {
        "train": 2,
        "valid": 4,
        "test": 6,
    }
    # Guitar and piano have 2 positives per split in the whole cache, techno 3: the vocabulary
    # does not depend on the subset (whose 2 training windows may hold no techno at all).
    assert a.tag_names == ("mtt/techno",)
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    b = PreparedDataset.open(tmp_path / "b")
    assert a.keys.tolist() == b.keys.tolist()  # seeded
    assert main([*args, "--out", str(tmp_path / "b")]) == 2  # exists: needs --overwrite


def test_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not a distillation cache"):
        prepare_distilled(tmp_path, tmp_path / "out")
    _write_cache(tmp_path / "cache")
    with pytest.raises(DatasetError, match="no tag has 100 positive"):
        prepare_distilled(tmp_path / "cache", tmp_path / "out", min_positives=100)
