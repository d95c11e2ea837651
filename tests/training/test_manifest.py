"""Own-data manifests: parsing, automatic splits, and a clear error for every kind of mistake."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile

from training.cli import main
from training.data.manifest import (
    ManifestError,
    assign_splits,
    read_manifest,
    read_vocabulary,
)
from training.data.store import PreparedDataset


def _audio(folder: Path, name: str, seconds: float = 1.0, rate: int = 44100) -> str:
    """A real stereo FLAC file (decoded and resampled to 16 kHz mono by the preparation)."""
    folder.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * rate)) / rate
    tone = 0.3 * np.sin(2 * np.pi * 330 * t)
    soundfile.write(folder / name, np.stack([tone, tone], axis=1), rate, format="FLAC")
    return f"audio/{name}"


def _vocabulary(tmp_path: Path) -> Path:
    path = tmp_path / "tags.txt"
    path.write_text("# my catalog's tags\npiano\nlofi\nrock  # guitars\n")
    return path


def test_prepare_csv_manifest(tmp_path: Path) -> None:
    rows = ["path,tags,split"]
    for i in range(12):
        split = "train" if i < 8 else "val" if i < 10 else "test"
        tags = ["piano;lofi", "rock", ""][i % 3]
        rows.append(f"{_audio(tmp_path / 'audio', f't{i}.flac')},{tags},{split}")
    (tmp_path / "audio" / "broken.flac").write_bytes(b"fLaC but not really")
    rows.append("audio/broken.flac,rock,train")
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("\n".join(rows) + "\n")
    out = tmp_path / "prepared"
    args = ["prepare-manifest", "--manifest", str(manifest), "--vocabulary"]
    args += [str(_vocabulary(tmp_path)), "--out", str(out), "--workers", "1", "--no-progress"]
    assert main(args) == 0
    data = PreparedDataset.open(out)
    assert data.tag_names == ("piano", "lofi", "rock")
    assert [tag.category for tag in data.tags] == ["instrument", "other", "genre"]
    assert data.info["clips"] == {"train": 8, "valid": 2, "test": 2}
    assert len(data.info["skipped"]) == 1
    assert "broken.flac" in data.info["skipped"][0]["path"]
    assert data.keys[0] == "audio/t0.flac"
    assert data.labels[:3].tolist() == [[1, 1, 0], [0, 0, 1], [0, 0, 0]]
    assert data.sample_rate == 16000
    assert int(data.lengths[0]) == 16000
    assert data.info["source"]["manifest"] == "manifest.csv"  # no machine paths in provenance


def test_jsonl_manifest_and_json_vocabulary(tmp_path: Path) -> None:
    vocabulary = tmp_path / "tags.json"
    vocabulary.write_text(
        json.dumps([{"name": "calm", "category": "mood"}, {"name": "harp", "synonym_group": "h"}])
    )
    tags = read_vocabulary(vocabulary)
    assert [(t.name, t.category, t.synonym_group) for t in tags] == [
        ("calm", "mood", "calm"),
        ("harp", "other", "h"),
    ]
    manifest = tmp_path / "m.jsonl"
    lines = [
        {"path": _audio(tmp_path / "audio", "a.flac"), "tags": ["calm", "harp"]},
        {"path": _audio(tmp_path / "audio", "b.flac"), "tags": "harp", "split": "validation"},
    ]
    manifest.write_text("\n".join(json.dumps(line) for line in lines) + "\n\n")
    entries = read_manifest(manifest, tags)
    assert [e.tags for e in entries] == [("calm", "harp"), ("harp",)]
    assert [e.split for e in entries] == [None, "valid"]
    assert entries[0].path == (tmp_path / "audio" / "a.flac").resolve()


def test_automatic_split_is_deterministic_and_stable(tmp_path: Path) -> None:
    tags = read_vocabulary(_vocabulary(tmp_path))
    lines = ["path,tags"] + [
        f"{_audio(tmp_path / 'audio', f'{i}.flac', 0.1)},rock" for i in range(60)
    ]
    manifest = tmp_path / "m.csv"
    manifest.write_text("\n".join(lines))
    entries = read_manifest(manifest, tags)
    splits = assign_splits(entries, valid_fraction=0.2, test_fraction=0.2, seed=3)
    assert splits == assign_splits(entries, valid_fraction=0.2, test_fraction=0.2, seed=3)
    assert 15 <= splits.count("train") <= 50
    assert splits.count("valid")
    assert splits.count("test")
    # Adding rows never moves the old ones.
    longer = assign_splits([*entries, entries[0]], valid_fraction=0.2, test_fraction=0.2, seed=3)
    assert longer[:60] == splits
    assert splits != assign_splits(entries, valid_fraction=0.2, test_fraction=0.2, seed=4)


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (["audio/ok.flac,rokc,"], r"m\.csv:2: 'rokc' \(did you mean 'rock'\?\)"),
        (["audio/absent.flac,rock,"], r"1 audio files not found: m\.csv:2: audio/absent\.flac"),
        (["audio/ok.flac,rock,holdout"], "split 'holdout' is not train, valid or test"),
        (["audio/ok.flac,rock,", "audio/ok.flac,piano,"], "already listed on line 2"),
        ([",rock,"], r"m\.csv:2: no audio path"),
    ],
)
def test_manifest_errors_say_what_to_fix(tmp_path: Path, rows: list[str], message: str) -> None:
    _audio(tmp_path / "audio", "ok.flac", 0.1)
    manifest = tmp_path / "m.csv"
    manifest.write_text("\n".join(["path,tags,split", *rows]))
    with pytest.raises(ManifestError, match=message):
        read_manifest(manifest, read_vocabulary(_vocabulary(tmp_path)))


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,tags\nx.flac,jazz\ny.flac,rock;blues\n")
    with pytest.raises(ManifestError) as caught:
        read_manifest(manifest, read_vocabulary(_vocabulary(tmp_path)))
    text = str(caught.value)
    assert "2 tags not in the vocabulary" in text
    assert "'jazz'" in text
    assert "'blues'" in text
    assert "2 audio files not found" in text
    assert "x.flac" in text
    assert "y.flac" in text


def test_empty_splits_and_bad_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    vocabulary = _vocabulary(tmp_path)
    manifest = tmp_path / "m.csv"
    path = _audio(tmp_path / "audio", "a.flac", 0.1)
    manifest.write_text(f"path,tags,split\n{path},rock,train\n")
    args = ["prepare-manifest", "--manifest", str(manifest), "--vocabulary", str(vocabulary)]
    assert main([*args, "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    error = capsys.readouterr().err
    assert "the valid split is empty (1 train, 0 valid, 0 test)" in error
    assert "Traceback" not in error
    tags = read_vocabulary(vocabulary)
    (tmp_path / "h.csv").write_text("file,labels\na.flac,rock\n")
    with pytest.raises(ManifestError, match="must name the columns path and tags"):
        read_manifest(tmp_path / "h.csv", tags)
    (tmp_path / "e.csv").write_text("path,tags\n")
    with pytest.raises(ManifestError, match="has no rows"):
        read_manifest(tmp_path / "e.csv", tags)
    with pytest.raises(ManifestError, match=r"must be a \.csv or \.jsonl"):
        read_manifest(tmp_path / "m.txt", tags)
    (tmp_path / "bad.jsonl").write_text('{"path": "a.flac", "tags": [}\n')
    with pytest.raises(ManifestError, match="not valid JSON"):
        read_manifest(tmp_path / "bad.jsonl", tags)
    (tmp_path / "dup.txt").write_text("rock\nrock\n")
    with pytest.raises(ManifestError, match="tag names must be unique"):
        read_vocabulary(tmp_path / "dup.txt")
    (tmp_path / "none.txt").write_text("# nothing\n")
    with pytest.raises(ManifestError, match="holds no tags"):
        read_vocabulary(tmp_path / "none.txt")
