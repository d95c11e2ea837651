"""Streaming selected members out of a real .deb built here with dpkg-deb."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from training.debian_archive import extract_selected


def _build_deb(tmp_path: Path) -> Path:
    if shutil.which("dpkg-deb") is None:
        message = "dpkg-deb not available: cannot build a Debian package"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    tree = tmp_path / "tree"
    music = tree / "usr/share/games/demo/music"
    music.mkdir(parents=True)
    (music / "theme.ogg").write_bytes(b"OggS theme")
    (music / "notes.txt").write_text("not music")
    (tree / "usr/share/games/demo/data.bin").write_bytes(bytes(1000))
    # Debian deduplicates identical files through links: the alias must come out as a file.
    alias = tree / "usr/share/games/demo/sounds"
    alias.mkdir()
    (alias / "menu.ogg").symlink_to("../music/theme.ogg")
    doc = tree / "usr/share/doc/demo"
    doc.mkdir(parents=True)
    (doc / "copyright").write_text("Format: ...\n")
    (tree / "DEBIAN").mkdir()
    (tree / "DEBIAN/control").write_text(
        "Package: demo\nVersion: 1.0\nArchitecture: all\nMaintainer: t <t@example.org>\n"
        "Description: demo\n"
    )
    deb = tmp_path / "demo_1.0_all.deb"
    subprocess.run(["dpkg-deb", "--build", str(tree), str(deb)], check=True, capture_output=True)
    return deb


def test_only_selected_members_and_wanted_paths_are_written(tmp_path: Path) -> None:
    deb = _build_deb(tmp_path)
    root = tmp_path / "out"
    extraction = extract_selected(
        deb,
        ["usr/share/doc/demo/copyright"],
        root,
        lambda path: path.endswith(".ogg"),
    )
    assert sorted(extraction.written) == [
        "usr/share/doc/demo/copyright",
        "usr/share/games/demo/music/theme.ogg",
        "usr/share/games/demo/sounds/menu.ogg",
    ]
    assert sorted(extraction.seen_audio) == [
        "usr/share/games/demo/music/theme.ogg",
        "usr/share/games/demo/sounds/menu.ogg",
    ]
    assert (root / "usr/share/games/demo/sounds/menu.ogg").read_bytes() == b"OggS theme"
    assert not (root / "usr/share/games/demo/sounds/menu.ogg").is_symlink()
    assert not (root / "usr/share/games/demo/data.bin").exists()
    assert not (root / "usr/share/games/demo/music/notes.txt").exists()


def test_a_linked_target_outside_the_selection_is_fetched_in_a_second_pass(
    tmp_path: Path,
) -> None:
    deb = _build_deb(tmp_path)
    root = tmp_path / "out"
    extraction = extract_selected(deb, [], root, lambda path: "/sounds/" in path)
    assert extraction.written == ["usr/share/games/demo/sounds/menu.ogg"]
    assert (root / "usr/share/games/demo/sounds/menu.ogg").read_bytes() == b"OggS theme"
