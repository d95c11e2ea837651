"""fetch-music end to end on .deb packages built here (dpkg-deb) that keep their music inside a
zip and a Qt .rcc, as 0ad-data and gcompris-qt-data do; the audio is generated tones."""

from __future__ import annotations

import io
import json
import os
import shutil
import struct
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from training import fetch_music
from training.fetch_music import (
    PACKAGES,
    RESERVED_PACKAGES,
    PackageSpec,
    fetch_package,
    rebuild_manifest,
    select_members,
)

RATE = 8000
COPYRIGHT = """\
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/

Files: *
Copyright: 2020 Demo Studio
License: GPL-2+
"""
CREDITS = """\
Copyright: A. Fiddler
License: CC-BY 3.0
Source: https://example.org/reel.ogg
Files:
reel.wav

Some prose about the other files, with no licence in it.
"""


def _wav(seconds: float) -> bytes:
    t = np.arange(int(seconds * RATE)) / RATE
    buffer = io.BytesIO()
    sf.write(buffer, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), RATE, format="WAV")
    return buffer.getvalue()


def _rcc(files: dict[str, bytes]) -> bytes:
    """A version-3 Qt resource holding ``files`` (one folder level), all stored uncompressed."""
    folders = sorted({path.split("/")[0] for path in files})
    children = {f: sorted(p.split("/")[1] for p in files if p.startswith(f + "/")) for f in folders}
    names, name_at = b"", {}
    for text in [*folders, *sorted({n for c in children.values() for n in c})]:
        name_at[text] = len(names)
        names += struct.pack(">HI", len(text), 0) + text.encode("utf-16-be")
    data, data_at = b"", {}
    for path, blob in files.items():
        data_at[path] = len(data)
        data += struct.pack(">I", len(blob)) + blob
    stamp = bytes(8)
    tree = struct.pack(">IHII", 0, 2, len(folders), 1) + stamp
    first = 1 + len(folders)
    for folder in folders:
        tree += struct.pack(">IHII", name_at[folder], 2, len(children[folder]), first) + stamp
        first += len(children[folder])
    for folder in folders:
        for child in children[folder]:
            offset = data_at[f"{folder}/{child}"]
            tree += struct.pack(">IHHHI", name_at[child], 0, 0, 0, offset) + stamp
    tree_at = 24  # after the version-3 header: magic, version, 3 offsets, flags
    data_start = tree_at + len(tree)
    header = b"qres" + struct.pack(">5I", 3, tree_at, data_start, data_start + len(data), 0)
    return header + tree + data + names


def _deb(tmp_path: Path, package: str, files: dict[str, bytes]) -> Path:
    if shutil.which("dpkg-deb") is None:
        message = "dpkg-deb not available: cannot build a Debian package"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    tree = tmp_path / f"tree-{package}"
    for path, blob in {**files, f"usr/share/doc/{package}/copyright": COPYRIGHT.encode()}.items():
        (tree / path).parent.mkdir(parents=True, exist_ok=True)
        (tree / path).write_bytes(blob)
    (tree / "DEBIAN").mkdir()
    (tree / "DEBIAN/control").write_text(
        f"Package: {package}\nVersion: 2.0-1\nArchitecture: all\n"
        "Maintainer: t <t@example.org>\nDescription: demo\n"
    )
    debs = tmp_path / "dest" / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    deb = debs / f"{package}_2.0-1_all.deb"  # found in DEST/debs, so nothing is downloaded
    subprocess.run(["dpkg-deb", "--build", str(tree), str(deb)], check=True, capture_output=True)
    return deb


ZIP_SPEC = PackageSpec(
    "usr/share/games/demo",
    "GPL-2+",
    ("public.zip",),
    "zip",
    inner=("audio/music/",),
    inner_base="audio/music/",
    min_duration_s=5.0,
    voice=(("choir.wav", "a test choir"),),
)
RCC_SPEC = PackageSpec(
    "usr/share/demo/rcc",
    "GPL-3+",
    ("world.rcc",),
    "rcc",
    inner=("music/",),
    inner_base="",
    credits="README",
    min_duration_s=5.0,
    exclude=("music/nonfree.wav",),
)


def test_zip_members_are_chosen_by_prefix_suffix_and_globs() -> None:
    names = [
        "audio/music/",
        "audio/music/battle.ogg",
        "audio/music/Credits.OPUS",
        "audio/music/readme.txt",
        "audio/attack/impact/sword.ogg",
        "art/music/cover.png",
    ]
    assert select_members(ZIP_SPEC, names) == {
        "audio/music/Credits.OPUS": "Credits.OPUS",
        "audio/music/battle.ogg": "battle.ogg",
    }
    spec = PackageSpec("x", "GPL-2+", kind="zip", inner=("m/",), exclude=("m/battle.*",))
    assert select_members(spec, [*names, "m/battle.ogg", "m/calm.ogg"]) == {
        "m/calm.ogg": "m/calm.ogg"
    }


def test_music_comes_out_of_a_zip_without_effects_and_with_voices_marked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("audio/music/theme.wav", _wav(6.0))
        z.writestr("audio/music/sting.wav", _wav(1.0))  # a jingle: dropped
        z.writestr("audio/music/choir.wav", _wav(2.0))  # short but a voice: kept
        z.writestr("audio/attack/boom.wav", _wav(6.0))  # a sound effect outside audio/music/
    _deb(tmp_path, "demo-zip", {"usr/share/games/demo/public.zip": archive.getvalue()})
    monkeypatch.setitem(PACKAGES, "demo-zip", ZIP_SPEC)
    dest = tmp_path / "dest"

    records = fetch_package("demo-zip", dest, keep_debs=True)

    assert [r["local_path"] for r in records] == ["demo-zip/choir.wav", "demo-zip/theme.wav"]
    choir, theme = records
    assert theme["path"] == "/usr/share/games/demo/public.zip:audio/music/theme.wav"
    assert (theme["duration_s"], theme["sample_rate"], theme["channels"]) == (6.0, 8000, 1)
    assert (theme["licence"], theme["copyright"]) == ("GPL-2+", "2020 Demo Studio")
    assert theme["licence_source"] == "debian/copyright (Files: *)"
    assert "content" not in theme
    assert (choir["content"], choir["content_note"]) == ("voice", "a test choir")
    assert sorted(p.name for p in (dest / "demo-zip").iterdir()) == [
        "choir.wav",
        "copyright",
        "manifest.jsonl",
        "theme.wav",
    ]
    assert not (dest / ".work" / "demo-zip").exists()  # the 3 GB zip of a real package is gone


def test_music_comes_out_of_a_qt_resource_with_the_licence_of_its_credits_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rcc = _rcc(
        {
            "music/README": CREDITS.encode(),
            "music/reel.wav": _wav(7.0),
            "music/march.wav": _wav(5.5),
            "music/nonfree.wav": _wav(9.0),
            "music/cover.webp": b"RIFF....WEBP",
            "other/click.wav": _wav(6.0),
        }
    )
    _deb(tmp_path, "demo-rcc", {"usr/share/demo/rcc/world.rcc": rcc})
    monkeypatch.setitem(PACKAGES, "demo-rcc", RCC_SPEC)

    march, reel = fetch_package("demo-rcc", tmp_path / "dest", keep_debs=True)

    assert reel["local_path"] == "demo-rcc/music/reel.wav"
    assert reel["path"] == "/usr/share/demo/rcc/world.rcc:music/reel.wav"
    assert (reel["licence"], reel["copyright"]) == ("CC-BY 3.0", "A. Fiddler")
    assert reel["origin"] == "https://example.org/reel.ogg"
    assert reel["licence_source"] == "README beside it in the archive (music/README)"
    assert reel["duration_s"] == 7.0
    # Not in the credits file: the package's debian/copyright applies.
    assert (march["local_path"], march["licence"]) == ("demo-rcc/music/march.wav", "GPL-2+")
    assert (tmp_path / "dest/demo-rcc/music/reel.wav").read_bytes() == _wav(7.0)


def test_a_rerun_redoes_an_interrupted_package_and_skips_a_complete_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("audio/music/theme.wav", _wav(6.0))
    _deb(tmp_path, "demo-zip", {"usr/share/games/demo/public.zip": archive.getvalue()})
    dest = tmp_path / "dest"
    # What a crash in the middle leaves: files, no manifest, a work folder.
    (dest / "demo-zip").mkdir(parents=True)
    (dest / "demo-zip" / "half.wav").write_bytes(b"partial")
    (dest / ".work" / "demo-zip" / "root").mkdir(parents=True)
    args = ["--dest", str(dest), "--packages", "demo-zip", "--keep-debs"]
    monkeypatch.setattr(fetch_music, "PACKAGES", {"demo-zip": ZIP_SPEC})  # only this one

    assert fetch_music.main(args) == 0
    first = (dest / "manifest.jsonl").read_text()
    assert [json.loads(line)["local_path"] for line in first.splitlines()] == ["demo-zip/theme.wav"]
    assert not (dest / "demo-zip" / "half.wav").exists()
    stamp = (dest / "demo-zip" / "manifest.jsonl").stat().st_mtime_ns
    assert fetch_music.main(args) == 0
    assert (dest / "demo-zip" / "manifest.jsonl").stat().st_mtime_ns == stamp
    assert (dest / "manifest.jsonl").read_text() == first


def test_voice_notes_reach_manifests_fetched_before_they_existed(tmp_path: Path) -> None:
    # A wesnoth manifest as the fetch wrote it before voices were annotated.
    old = [
        {"package": "wesnoth-1.16-music", "local_path": "wesnoth-1.16-music/elf-land.ogg"},
        {"package": "wesnoth-1.16-music", "local_path": "wesnoth-1.16-music/battle.ogg"},
        {"package": "scratch", "local_path": "scratch/Vocals/Singer1.wav"},
        {"package": "scratch", "local_path": "scratch/Music Loops/Cave.mp3", "content": "voice"},
    ]
    for package in ("wesnoth-1.16-music", "scratch"):
        (tmp_path / package).mkdir()
        lines = [json.dumps(r) for r in old if r["package"] == package]
        (tmp_path / package / "manifest.jsonl").write_text("\n".join(lines) + "\n")

    records = rebuild_manifest(tmp_path)

    assert [r.get("content") for r in records] == ["voice", None, "voice", None]
    assert records[0]["content_note"] == "choir throughout (27 s)"
    assert records[2]["content_note"] == "sung phrase (Scratch's Vocals folder)"
    assert "content_note" not in records[3]


def test_the_voices_of_the_real_packages_are_where_the_survey_found_them() -> None:
    voices = {
        package: [glob for glob, _ in spec.voice]
        for package, spec in PACKAGES.items()
        if spec.voice
    }
    assert voices == {
        "wesnoth-1.16-music": ["elf-land.ogg"],
        "scratch": ["Vocals/BeatBox*", "Vocals/*"],
        "gcompris-qt-data": ["explore_world_music/resource/music/italy.ogg"],
        "performous": ["themes/default/practice.ogg"],
        "lmms-common": ["chorus0*.ogg"],
    }
    assert not RESERVED_PACKAGES & PACKAGES.keys()


def test_a_reserved_package_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="reserved"):
        fetch_package("hedgewars-data", tmp_path, keep_debs=False)
