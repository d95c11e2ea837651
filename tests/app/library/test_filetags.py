"""File tags on real music in every format: written where players read them, read back by mutagen
and by the decoder, audio untouched, atomic under injected failures and a full disk, bad files
refused with a reason (app/library/filetags.py)."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import mutagen
import numpy as np
import pytest

from app.library import filetags
from app.library.filetags import FileTagError, UnsupportedFileError, strip_tags, write_tags
from tests.app.audio import encode
from tests.app.library.conftest import MODEL_ID, stated_choice
from tests.app.library.music import FORMATS, audio_packets, decoded
from tests.app.library.readback import read_raw

ROOT = Path(__file__).resolve().parents[3]


def no_temporary_files(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if p.name.endswith(filetags.TEMP_SUFFIX)]


@pytest.mark.parametrize("fmt", FORMATS)
def test_merge_writes_genres_moods_and_the_record_where_players_read_them(
    copies: dict[str, Path], fmt: str
) -> None:
    path = copies[fmt]
    packets, samples = audio_packets(path), decoded(path)

    plan = write_tags(path, stated_choice("merge"))

    tags = read_raw(path)
    assert tags["genre"] == ["Game", "rock", "electronic"]  # the file's own genre kept first
    assert tags["mood"] == ["happy", "chill"]
    assert tags["title"] == f"{path.stem} excerpt"  # other tags untouched
    record = tags["record"]
    assert record["model_id"] == MODEL_ID
    assert record["written"] == {"genre": ["rock", "electronic"], "mood": ["happy", "chill"]}
    assert len(record["scores"]) == 100
    assert record["scores"]["msd/happy"] == 0.64
    assert [c.name for c in plan.changes] == ["genre", "mood"]
    # Nothing lost: the compressed audio and the decoded samples are exactly what they were.
    assert audio_packets(path) == packets
    assert np.array_equal(decoded(path), samples)
    assert no_temporary_files(path.parent)


def test_id3_keeps_several_values_null_separated_in_one_v24_frame(copies: dict[str, Path]) -> None:
    path = copies["mp3"]
    write_tags(path, stated_choice("merge"))
    data = path.read_bytes()
    assert data[:5] == b"ID3\x04\x00"  # ID3v2.4
    assert b"Game\x00rock\x00electronic" in data  # one TCON frame, UTF-8, null-separated
    assert b"happy\x00chill" in data  # TMOO


@pytest.mark.parametrize("fmt", FORMATS)
def test_strip_removes_exactly_what_was_written(copies: dict[str, Path], fmt: str) -> None:
    path = copies[fmt]
    before = read_raw(path)
    samples = decoded(path)
    write_tags(path, stated_choice("merge"))

    plan = strip_tags(path)

    assert plan is not None
    assert plan.record is None
    after = read_raw(path)
    assert (
        after == before == {"genre": ["Game"], "mood": [], "record": None, "title": after["title"]}
    )
    assert np.array_equal(decoded(path), samples)
    assert strip_tags(path) is None  # nothing of ours left


@pytest.mark.parametrize("fmt", ["mp3", "flac", "m4a"])
def test_replace_puts_our_values_in_place_and_strip_puts_theirs_back(
    copies: dict[str, Path], fmt: str
) -> None:
    path = copies[fmt]
    write_tags(path, stated_choice("replace"))
    tags = read_raw(path)
    assert tags["genre"] == ["rock", "electronic"]
    assert tags["record"]["replaced"] == {"genre": ["Game"]}

    strip_tags(path)

    assert read_raw(path)["genre"] == ["Game"]


def test_a_second_write_with_other_settings_first_undoes_the_first(
    copies: dict[str, Path],
) -> None:
    path = copies["flac"]
    write_tags(path, stated_choice("merge"))
    write_tags(path, stated_choice("merge", top_k=1))  # one genre, one mood now
    tags = read_raw(path)
    assert tags["genre"] == ["Game", "rock"]
    assert tags["mood"] == ["happy"]
    assert tags["record"]["settings"]["top_k"] == 1
    strip_tags(path)
    assert read_raw(path)["genre"] == ["Game"]


def test_dry_run_changes_nothing(copies: dict[str, Path]) -> None:
    path = copies["opus"]
    data = path.read_bytes()
    plan = write_tags(path, stated_choice(), dry_run=True)
    assert "genre: [Game] -> [Game, rock, electronic]" in plan.describe()
    assert path.read_bytes() == data


@pytest.mark.parametrize("fmt", ["mp3", "flac", "m4a"])
def test_a_failure_in_the_middle_of_the_write_leaves_the_original(
    copies: dict[str, Path], fmt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = copies[fmt]
    data = path.read_bytes()

    def half_written(tags: Any) -> None:
        tags.save()  # the tags are written into the temporary copy...
        target = Path(tags.audio.filename)
        size = target.stat().st_size
        with open(target, "r+b") as handle:  # ...which is then cut in half, as by a crash
            handle.truncate(size // 2)
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(filetags, "_save", half_written)
    with pytest.raises(FileTagError, match="Input/output error"):
        write_tags(path, stated_choice())
    assert path.read_bytes() == data
    assert no_temporary_files(path.parent)


FULL_DISK_SCRIPT = """
import json, shutil, sys
from pathlib import Path
from app.library.filetags import FileTagError, Plan, apply
source, disk, planned = Path(sys.argv[1]), Path(sys.argv[2]), json.loads(sys.argv[3])
plan = Plan({k: tuple(v) for k, v in planned["fields"].items()}, planned["record"])
target = Path(shutil.copy(source, disk / source.name))
try:
    apply(target, plan)
    outcome = "written"
except FileTagError as error:
    outcome = str(error)
print(json.dumps({
    "outcome": outcome,
    "intact": target.read_bytes() == source.read_bytes(),
    "left": sorted(p.name for p in disk.iterdir()),
}))
"""


@pytest.mark.parametrize("room", ["none", "copy only"])
def test_a_full_disk_leaves_the_original(
    pristine: dict[str, Path], tmp_path: Path, room: str
) -> None:
    """A real full disk: a tmpfs just big enough for the file (no room for the copy), or for the
    file and its copy but not for the copy's larger tags, mounted in a private mount namespace."""
    if shutil.which("unshare") is None or os.geteuid() != 0:
        message = "a full-disk test needs root and unshare (util-linux) for a private tmpfs"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)

    def pages(size: int) -> int:
        return -(-size // 4096)

    def grown_pages(source: Path) -> int:
        scratch = Path(shutil.copy(source, tmp_path / f"scratch{source.suffix}"))
        write_tags(scratch, stated_choice())
        return pages(scratch.stat().st_size)

    # A file whose tags grow it by a page (FLAC has room in its padding, so it never grows).
    sizes = {
        fmt: (pages(pristine[fmt].stat().st_size), grown_pages(pristine[fmt])) for fmt in FORMATS
    }
    growing = [fmt for fmt, (before, after) in sizes.items() if after > before]
    assert growing, sizes
    source = pristine[growing[0]]
    before, after = sizes[growing[0]]
    pages_free = before if room == "none" else before + after - 1
    disk = tmp_path / "disk"
    disk.mkdir()
    script = tmp_path / "full_disk.py"
    script.write_text(textwrap.dedent(FULL_DISK_SCRIPT))
    # The plan is made here: the process on the small disk only writes (and imports no torch).
    plan = filetags.plan_write(filetags.read_state(source), stated_choice())
    planned = json.dumps({"fields": plan.fields, "record": plan.record})
    command = (
        f'mount -t tmpfs -o size={pages_free * 4096} tmpfs "$1" && exec "$2" "$3" "$4" "$1" "$5"'
    )
    result = subprocess.run(
        [
            "unshare",
            "-m",
            "sh",
            "-c",
            command,
            "sh",
            str(disk),
            sys.executable,
            str(script),
            str(source),
            planned,
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert "No space left on device" in report["outcome"]
    assert report["intact"] is True
    assert report["left"] == [source.name]  # no temporary file left behind


def test_read_only_files_are_refused_even_for_root(copies: dict[str, Path]) -> None:
    path = copies["flac"]
    data = path.read_bytes()
    path.chmod(0o444)
    with pytest.raises(FileTagError, match="read-only"):
        write_tags(path, stated_choice())
    assert path.read_bytes() == data


def test_a_file_locked_by_another_program_is_refused(copies: dict[str, Path]) -> None:
    path = copies["mp3"]
    data = path.read_bytes()
    with open(path, "rb") as other:  # another open file description, as another program has
        fcntl.flock(other.fileno(), fcntl.LOCK_EX)
        with pytest.raises(FileTagError, match="locked by another program"):
            write_tags(path, stated_choice())
    assert path.read_bytes() == data
    assert no_temporary_files(path.parent)


def test_corrupt_and_unsupported_files_get_a_reason(tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.flac"
    truncated.write_bytes(encode("flac", 2.0)[:100])
    with pytest.raises(FileTagError, match="corrupt"):
        write_tags(truncated, stated_choice())
    wav = tmp_path / "song.wav"
    wav.write_bytes(encode("wav", 1.0))
    with pytest.raises(UnsupportedFileError, match="WAVE files are not supported"):
        write_tags(wav, stated_choice())
    text = tmp_path / "notes.mp3"
    text.write_text("not audio at all\n" * 20)
    with pytest.raises(FileTagError):
        write_tags(text, stated_choice())
    assert text.read_text() == "not audio at all\n" * 20


def test_a_music_tagger_field_written_by_someone_else_is_left_alone(
    copies: dict[str, Path],
) -> None:
    path = copies["ogg"]
    audio = mutagen.File(path)
    audio.tags["MUSIC_TAGGER"] = ["someone else's notes"]
    audio.save()
    data = path.read_bytes()
    with pytest.raises(FileTagError, match="did not write"):
        write_tags(path, stated_choice())
    assert path.read_bytes() == data


def test_a_symbolic_link_stays_a_link_to_the_written_file(copies: dict[str, Path]) -> None:
    path = copies["m4a"]
    link = path.parent / "link.m4a"
    link.symlink_to(path.name)
    write_tags(link, stated_choice())
    assert link.is_symlink()
    assert read_raw(path)["genre"] == ["Game", "rock", "electronic"]
