"""Read files out of a Qt binary resource (``.rcc``), the format ``rcc -binary`` writes.

Why: GCompris keeps its sounds (world-music clips among them) inside ``.rcc`` files, and no
PyPI package reads them. The layout, from Qt's ``rcc.cpp`` / ``qresource.cpp`` (all integers
big-endian):

* header: ``b"qres"``, version (u32, 1-3), tree offset, data offset, names offset (u32 each)
  and, from version 3, the overall flags (u32);
* tree: fixed-size nodes (14 bytes, 22 from version 2, which adds a u64 modification time),
  node 0 the root: name offset (u32), flags (u16), then for a directory the child count and
  the index of the first child (u32 each), for a file territory (u16), language (u16) and data
  offset (u32);
* names: length in UTF-16 code units (u16), hash (u32), the name in UTF-16BE;
* data: length (u32) and the bytes, which are ``qCompress`` output (u32 uncompressed length,
  then a zlib stream) when the node's flag 0x01 is set, and a zstd frame for flag 0x04.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

MAGIC = b"qres"
COMPRESSED = 0x01
DIRECTORY = 0x02
COMPRESSED_ZSTD = 0x04


class RccError(ValueError):
    """The file is not a Qt resource or is damaged."""


@dataclass(frozen=True)
class RccEntry:
    """One file of the resource: its path ("sounds/a.ogg"), flags and stored size."""

    path: str
    flags: int
    data_offset: int  # absolute offset of the stored bytes (after their u32 length)
    stored_size: int

    @property
    def compression(self) -> str:
        if self.flags & COMPRESSED_ZSTD:
            return "zstd"
        return "zlib" if self.flags & COMPRESSED else "none"


class RccFile:
    """A whole ``.rcc`` held in memory (they are a few MB each); ``entries()`` walks its tree."""

    def __init__(self, blob: bytes) -> None:
        if len(blob) < 20 or blob[:4] != MAGIC:
            raise RccError("not a Qt resource file (no 'qres' magic)")
        version, self._tree, self._data, self._names = struct.unpack_from(">4I", blob, 4)
        if not 1 <= version <= 3:
            raise RccError(f"unsupported Qt resource version {version}")
        self.version = version
        self._node_size = 14 if version == 1 else 22
        self._blob = blob

    @classmethod
    def open(cls, path: Path) -> RccFile:
        return cls(path.read_bytes())

    def _unpack(self, fmt: str, offset: int) -> tuple[int, ...]:
        try:
            return struct.unpack_from(fmt, self._blob, offset)
        except struct.error as exc:
            raise RccError(f"truncated Qt resource (offset {offset})") from exc

    def _name(self, name_offset: int) -> str:
        start = self._names + name_offset
        (length,) = self._unpack(">H", start)
        raw = self._blob[start + 6 : start + 6 + 2 * length]
        if len(raw) != 2 * length:
            raise RccError(f"truncated name at offset {start}")
        return raw.decode("utf-16-be")

    def entries(self) -> Iterator[RccEntry]:
        """Every file, depth first, with its path from the root."""
        stack: list[tuple[int, str]] = [(0, "")]
        seen: set[int] = set()
        while stack:
            index, prefix = stack.pop()
            if index in seen:  # a damaged tree could loop forever
                raise RccError(f"node {index} is reached twice")
            seen.add(index)
            node = self._tree + index * self._node_size
            name_offset, flags = self._unpack(">IH", node)
            name = "" if index == 0 else self._name(name_offset)
            path = f"{prefix}/{name}" if prefix else name
            if flags & DIRECTORY:
                count, first = self._unpack(">II", node + 6)
                stack.extend((child, path) for child in reversed(range(first, first + count)))
                continue
            (data_offset,) = self._unpack(">I", node + 10)
            start = self._data + data_offset
            (size,) = self._unpack(">I", start)
            if start + 4 + size > len(self._blob):
                raise RccError(f"{path}: data runs past the end of the file")
            yield RccEntry(path, flags, start + 4, size)

    def read(self, entry: RccEntry) -> bytes:
        """The file's bytes, decompressed."""
        stored = self._blob[entry.data_offset : entry.data_offset + entry.stored_size]
        if entry.compression == "zstd":
            try:
                import zstandard  # type: ignore[import-not-found]
            except ImportError as exc:
                raise RccError(
                    f"{entry.path} is zstd-compressed: install the `zstandard` package to read it"
                ) from exc
            return bytes(zstandard.ZstdDecompressor().decompress(stored))
        if entry.compression == "zlib":
            (expected,) = struct.unpack_from(">I", stored)
            data = zlib.decompress(stored[4:])
            if len(data) != expected:
                raise RccError(f"{entry.path}: {len(data)} bytes unpacked, header says {expected}")
            return data
        return stored
