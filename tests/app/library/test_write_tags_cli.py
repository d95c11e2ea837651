"""`tagger write-tags` and `tagger strip-tags` with the bundled default model on a folder of real
music in every format, with bad files among them (app/cli/library_commands.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from app.cli.main import main
from tests.app.audio import encode
from tests.app.library.music import audio_packets, decoded
from tests.app.library.readback import DEFAULT_MODEL, read_raw

# What the default model (v3) finds in the excerpts (tests/app/library/music.py), as genres,
# highest score first.
EXPECTED_GENRES = {
    "metal.ogg": ["Game", "rock", "metal"],
    "orchestral.flac": ["Game", "classical"],
    "orchestral.m4a": ["Game", "classical"],
    "techno.mp3": ["Game", "ambient", "electronic", "experimental"],
    "techno.opus": ["Game", "ambient", "electronic", "experimental"],
}


@pytest.fixture
def library(tmp_path: Path, pristine: dict[str, Path]) -> Path:
    folder = tmp_path / "library"
    folder.mkdir()
    for path in pristine.values():
        shutil.copy2(path, folder / path.name)
    return folder


def test_write_tags_writes_every_format_and_skips_on_a_rerun(
    library: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    packets = {p.name: audio_packets(p) for p in library.iterdir()}
    samples = {p.name: decoded(p) for p in library.iterdir()}

    assert main(["write-tags", str(library), "--no-progress"]) == 0

    out, err = capsys.readouterr()
    assert out.count("wrote: ") == 5
    assert "files: 5 written, 0 skipped, 0 failed" in err
    for name, genres in EXPECTED_GENRES.items():
        path = library / name
        tags = read_raw(path)
        assert tags["genre"] == genres, name
        assert tags["record"]["model_id"] == DEFAULT_MODEL
        assert len(tags["record"]["scores"]) == 100
        assert audio_packets(path) == packets[name]
        assert np.array_equal(decoded(path), samples[name])

    stamps = {p.name: p.stat().st_mtime_ns for p in library.iterdir()}
    assert main(["write-tags", str(library), "--no-progress"]) == 0
    assert "files: 0 written, 5 skipped, 0 failed" in capsys.readouterr().err
    assert {p.name: p.stat().st_mtime_ns for p in library.iterdir()} == stamps  # untouched

    assert main(["write-tags", str(library), "--top-k", "1", "--no-progress"]) == 0  # new settings
    assert read_raw(library / "techno.mp3")["genre"] == ["Game", "ambient"]
    capsys.readouterr()

    assert main(["strip-tags", str(library)]) == 0
    assert "files: 5 stripped, 0 without tags of ours, 0 failed" in capsys.readouterr().err
    for name in EXPECTED_GENRES:
        tags = read_raw(library / name)
        assert (tags["genre"], tags["mood"], tags["record"]) == (["Game"], [], None)


def test_dry_run_prints_the_changes_and_writes_nothing(
    library: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    contents = {p.name: p.read_bytes() for p in library.iterdir()}
    assert main(["write-tags", str(library / "metal.ogg"), "--dry-run", "--replace"]) == 0
    out = capsys.readouterr().out
    assert "would write: " in out
    assert "genre: [Game] -> [rock, metal]" in out
    assert {p.name: p.read_bytes() for p in library.iterdir()} == contents


def test_bad_files_get_a_message_each_and_exit_1_after_the_good_ones(
    library: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (library / "song.wav").write_bytes(encode("wav", 1.0))
    (library / "broken.flac").write_bytes(encode("flac", 2.0)[:100])
    read_only = library / "orchestral.flac"
    read_only.chmod(0o444)
    protected = read_only.read_bytes()

    code = main(["write-tags", str(library), str(library / "missing.mp3"), "--no-progress"])

    assert code == 1
    err = capsys.readouterr().err
    assert "failed: " + str(library / "song.wav") + ": WAVE files are not supported" in err
    assert "failed: " + str(library / "broken.flac") + ": corrupt" in err
    assert "failed: " + str(read_only) + ": the file is read-only" in err
    assert "failed: " + str(library / "missing.mp3") + ": no such file or folder" in err
    assert "files: 4 written, 0 skipped, 4 failed" in err
    assert read_only.read_bytes() == protected
    assert read_raw(library / "metal.ogg")["genre"] == EXPECTED_GENRES["metal.ogg"]


def test_options_that_cannot_work_stop_before_any_file(
    library: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["write-tags", str(library), "--top-k", "0"]) == 2
    assert "top-k must be at least 1" in capsys.readouterr().err
    assert main(["write-tags", str(library), "--taxonomy", "jamendo"]) == 2
    assert "unknown taxonomy 'jamendo'" in capsys.readouterr().err
    assert main(["write-tags", str(library), "--checkpoint", str(library / "none.st")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
