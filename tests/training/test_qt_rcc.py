"""Reading Qt binary resources (.rcc) laid out byte by byte here as Qt's rcc tool writes them."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest

from training.qt_rcc import RccError, RccFile

# One directory tree: music/ holds a stored clip and a zlib-compressed README, plus a top file.
TUNE = b"OggS\x00\x02" + bytes(range(40))
README = b"Copyright: A. Musician\nLicense: CC0-1.0\nFiles:\ntune.ogg\n" * 3
TOP = b"top-level bytes"


def _name(text: str) -> bytes:
    encoded = text.encode("utf-16-be")
    return struct.pack(">HI", len(text), 0x1234) + encoded  # rcc's hash is not checked on read


def _build(version: int, compress_readme: bool = True) -> bytes:
    """Nodes in rcc's breadth-first order: 0 root, 1 music, 2 top.bin, 3 README, 4 tune.ogg."""
    names = b""
    offsets: dict[str, int] = {}
    for text in ("music", "top.bin", "README", "tune.ogg"):
        offsets[text] = len(names)
        names += _name(text)
    readme_stored = (
        struct.pack(">I", len(README)) + zlib.compress(README) if compress_readme else README
    )
    data = b""
    data_offsets: dict[str, int] = {}
    for key, blob in (("top.bin", TOP), ("README", readme_stored), ("tune.ogg", TUNE)):
        data_offsets[key] = len(data)
        data += struct.pack(">I", len(blob)) + blob
    stamp = struct.pack(">Q", 1_700_000_000_000) if version >= 2 else b""

    def directory(name_offset: int, count: int, first: int) -> bytes:
        return struct.pack(">IHII", name_offset, 0x02, count, first) + stamp

    def file(name: str, flags: int) -> bytes:
        return struct.pack(">IHHHI", offsets[name], flags, 0, 0, data_offsets[name]) + stamp

    tree = (
        directory(0, 2, 1)
        + directory(offsets["music"], 2, 3)
        + file("top.bin", 0)
        + file("README", 0x01 if compress_readme else 0)
        + file("tune.ogg", 0)
    )
    header_size = 24 if version >= 3 else 20
    tree_offset = header_size
    data_offset = tree_offset + len(tree)
    names_offset = data_offset + len(data)
    header = b"qres" + struct.pack(">IIII", version, tree_offset, data_offset, names_offset)
    if version >= 3:
        header += struct.pack(">I", 0)
    return header + tree + data + names


@pytest.mark.parametrize("version", [1, 2, 3])
def test_every_file_is_listed_with_its_path_and_bytes(version: int) -> None:
    rcc = RccFile(_build(version))
    entries = list(rcc.entries())
    assert [e.path for e in entries] == ["music/README", "music/tune.ogg", "top.bin"]
    assert [e.compression for e in entries] == ["zlib", "none", "none"]
    assert [rcc.read(e) for e in entries] == [README, TUNE, TOP]


def test_a_file_on_disk_is_read_the_same(tmp_path: Path) -> None:
    path = tmp_path / "sounds.rcc"
    path.write_bytes(_build(3, compress_readme=False))
    rcc = RccFile.open(path)
    assert {e.path: rcc.read(e) for e in rcc.entries()}["music/README"] == README


def test_something_else_is_refused_clearly() -> None:
    with pytest.raises(RccError, match="no 'qres' magic"):
        RccFile(b"PK\x03\x04" + bytes(40))
    with pytest.raises(RccError, match="version 7"):
        RccFile(b"qres" + struct.pack(">IIII", 7, 20, 20, 20))


def test_a_truncated_file_is_reported_not_misread() -> None:
    blob = _build(3)
    with pytest.raises(RccError, match="truncated"):
        list(RccFile(blob[: len(blob) - 10]).entries())
