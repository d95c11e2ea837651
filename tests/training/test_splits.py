"""MagnaTagATune split logic: Won et al.'s split files with their count checks, and the paper's
folder split computed from annotations_final.csv alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from model.tags import MTAT_TAG_NAMES
from tests.training.fakes import FakeMtat, write_annotations_only
from training.cli import main
from training.data.mtat import (
    WON_EXPECTED_COUNTS,
    folder_split,
    read_annotations,
    won_split,
)
from training.data.store import DatasetError, PreparedDataset

N_TRAIN = 120  # the real train.npy has about 15,244 lines; the count is not checked


def _won_fixture(tmp_path: Path) -> tuple[Path, Path, list[str], np.ndarray]:
    """A CSV with train (0-b), valid (c) and test (d-f) rows plus untagged rows, and the five
    split files in Won et al.'s format (lines "<row>\\t<path>") with the published counts."""
    rng = np.random.default_rng(1)
    paths: list[str] = []
    splits: list[str] = []
    for split, count, folders in (
        ("train", N_TRAIN, "0123456789ab"),
        ("valid", WON_EXPECTED_COUNTS["valid"], "c"),
        ("test", WON_EXPECTED_COUNTS["test"], "def"),
        ("none", 40, "0c"),  # clips that no split lists (e.g. without top-50 tags)
    ):
        for i in range(count):
            paths.append(f"{folders[i % len(folders)]}/clip-{split}-{i}.mp3")
            splits.append(split)
    labels = (rng.random((len(paths), len(MTAT_TAG_NAMES))) < 0.1).astype(np.uint8)
    csv_path = tmp_path / "annotations_final.csv"
    write_annotations_only(csv_path, paths, labels)
    split_dir = tmp_path / "split"
    split_dir.mkdir()
    order = rng.permutation(len(paths))  # split files list rows in their own order
    for split in ("train", "valid", "test"):
        lines = [f"{row}\t{paths[row]}" for row in order if splits[row] == split]
        np.save(split_dir / f"{split}.npy", np.array(lines))
    binary = labels.copy()
    binary[0] = 1 - binary[0]  # labels must come from binary.npy, not from the CSV
    np.save(split_dir / "binary.npy", binary)
    np.save(split_dir / "tags.npy", np.array(MTAT_TAG_NAMES))
    return csv_path, split_dir, splits, binary


def test_won_split_counts_and_labels(tmp_path: Path) -> None:
    csv_path, split_dir, splits, binary = _won_fixture(tmp_path)
    annotations = read_annotations(csv_path)
    assert annotations.n_tag_columns == 60
    clips = won_split(annotations, split_dir)
    counts = {s: sum(c.split == s for c in clips) for s in ("train", "valid", "test")}
    assert counts == {"train": N_TRAIN, "valid": 1529, "test": 4332}
    for clip in clips:
        assert clip.split == splits[clip.row]
        np.testing.assert_array_equal(clip.labels, binary[clip.row])
    assert any(clip.row == 0 for clip in clips)


def test_won_split_refuses_wrong_counts(tmp_path: Path) -> None:
    csv_path, split_dir, _, _ = _won_fixture(tmp_path)
    valid = np.load(split_dir / "valid.npy")
    np.save(split_dir / "valid.npy", valid[:-1])
    annotations = read_annotations(csv_path)
    with pytest.raises(DatasetError, match=r"valid has 1528 \(expected 1529\)"):
        won_split(annotations, split_dir)
    clips = won_split(annotations, split_dir, check_counts=False)
    assert sum(c.split == "valid" for c in clips) == 1528


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("lee_order", "first difference at position 47"),
        ("wrong_path", "the split files and the CSV do not match"),
        ("twice", "is in both train and test"),
        ("missing_file", r"split file not found: .*binary\.npy .*minzwon"),
        ("bad_line", "is not '<row>"),
    ],
)
def test_won_split_refuses_inconsistent_files(tmp_path: Path, damage: str, message: str) -> None:
    csv_path, split_dir, _, _ = _won_fixture(tmp_path)
    if damage == "lee_order":  # Lee's top50_tags.txt swaps metal and female voice
        tags = list(MTAT_TAG_NAMES)
        tags[47], tags[48] = tags[48], tags[47]
        np.save(split_dir / "tags.npy", np.array(tags))
    elif damage == "wrong_path":
        train = np.load(split_dir / "train.npy")
        row = train[0].split("\t")[0]
        train[0] = f"{row}\tf/another-clip.mp3"
        np.save(split_dir / "train.npy", train)
    elif damage == "twice":
        train, test = np.load(split_dir / "train.npy"), np.load(split_dir / "test.npy")
        np.save(split_dir / "test.npy", np.concatenate([test, train[:1]]))
    elif damage == "missing_file":
        (split_dir / "binary.npy").unlink()
    elif damage == "bad_line":
        np.save(split_dir / "valid.npy", np.array(["c/no-row-index.mp3"]))
    with pytest.raises(DatasetError, match=message):
        won_split(read_annotations(csv_path), split_dir)


def test_folder_split_from_csv_alone(tmp_path: Path) -> None:
    paths = ["0/a.mp3", "b/b.mp3", "c/c.mp3", "d/d.mp3", "f/e.mp3", "3/untagged.mp3"]
    labels = np.zeros((len(paths), len(MTAT_TAG_NAMES)), dtype=np.uint8)
    for row in range(5):
        labels[row, row * 7] = 1
    csv_path = tmp_path / "annotations_final.csv"
    write_annotations_only(csv_path, paths, labels)
    clips = folder_split(read_annotations(csv_path))
    assert [(c.row, c.split) for c in clips] == [
        (0, "train"),
        (1, "train"),
        (2, "valid"),
        (3, "test"),
        (4, "test"),
    ]
    for clip in clips:
        np.testing.assert_array_equal(clip.labels, labels[clip.row])


def test_annotations_errors_name_the_problem(tmp_path: Path) -> None:
    path = tmp_path / "annotations_final.csv"
    path.write_text('"clip_id"\t"guitar"\t"mp3_path"\n"2"\t"1"\t"0/a.mp3"\n')
    with pytest.raises(DatasetError, match="lacks top-50 tag columns: classical, slow"):
        read_annotations(path)
    write_annotations_only(path, ["0/a.mp3"], np.zeros((1, 50), dtype=np.uint8))
    with path.open("a") as handle:
        handle.write('"3"\t"0"\n')
    with pytest.raises(DatasetError, match=r"annotations_final.csv:3: 2 fields"):
        read_annotations(path)
    with pytest.raises(DatasetError, match="not found"):
        read_annotations(tmp_path / "absent.csv")
    write_annotations_only(path, ["g/a.mp3"], np.ones((1, 50), dtype=np.uint8))
    with pytest.raises(DatasetError, match=r"not in one of the folders 0\.\.f"):
        folder_split(read_annotations(path))


def test_prepare_won_split_on_real_mp3s(
    fake_mtat: FakeMtat, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """prepare-mtat with split files, two decoding processes, and the count check relaxed."""
    split_dir = tmp_path / "split"
    split_dir.mkdir()
    rows: dict[str, list[str]] = {"train": [], "valid": [], "test": []}
    for row, path in enumerate(fake_mtat.mp3_paths):
        folder = path[0]
        split = "valid" if folder == "c" else "test" if folder in "def" else "train"
        rows[split].append(f"{row}\t{path}")
    for split, lines in rows.items():
        np.save(split_dir / f"{split}.npy", np.array(lines))
    binary = fake_mtat.labels.copy()
    np.save(split_dir / "binary.npy", binary)
    np.save(split_dir / "tags.npy", np.array(MTAT_TAG_NAMES))
    out = tmp_path / "prepared"
    args = ["prepare-mtat", "--mtat", str(fake_mtat.root), "--won-split", str(split_dir)]
    args += ["--out", str(out), "--workers", "2", "--no-progress", "--dtype", "float16"]
    assert main(args) == 2
    assert "valid has 3 (expected 1529)" in capsys.readouterr().err
    assert main([*args, "--allow-other-counts"]) == 0
    data = PreparedDataset.open(out)
    # Every listed clip except the empty mp3 (the split files may list untagged clips too).
    assert len(data) == len(fake_mtat.mp3_paths) - 1
    assert [s["path"] for s in data.info["skipped"]] == [str(fake_mtat.root / fake_mtat.broken)]
    assert data.info["source"]["split"] == "won"
    assert data.dtype == "float16"
    for index, key in enumerate(data.keys):
        np.testing.assert_array_equal(data.labels[index], binary[fake_mtat.mp3_paths.index(key)])
