"""Numpy-only reader for TensorFlow V2 checkpoints ("tensor bundles").

Why this exists: the only pretrained music-tagging weights reachable from the package registries
are the TF1 checkpoints inside ``musicnn==0.1.0`` on PyPI. Installing TensorFlow (about 2 GB) just
to read 3 MB of float32 weights is not acceptable for training or CI, and the one "pure python"
reader on PyPI is broken on numpy 2, so this module parses the two files directly.

A V2 checkpoint with prefix ``P`` is two kinds of file:

* ``P.index``: a LevelDB-style SSTable. The empty key holds a ``BundleHeaderProto``; every other
  key is a variable name whose value is a serialized ``BundleEntryProto`` (dtype, shape, shard,
  byte offset and size of the tensor).
* ``P.data-KKKKK-of-NNNNN``: raw little-endian tensor bytes, addressed by those entries.

Only what TensorFlow's ``Saver`` actually writes is supported: uncompressed blocks, little-endian
data, numeric dtypes and unpartitioned variables. Anything else raises a ``ValueError`` instead of
returning wrong numbers. Checksums are not verified (that would need a CRC32C implementation and
the musicnn files are pinned by the wheel's hash anyway).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import math
import re
import struct
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt

__all__ = ["MUSICNN_MODELS", "locate_musicnn_checkpoint", "read_tf_checkpoint"]

#: Checkpoint directories shipped in the ``musicnn==0.1.0`` wheel.
MUSICNN_MODELS = ("MTT_musicnn", "MTT_vgg", "MSD_musicnn", "MSD_vgg")

# LevelDB table footer: two block handles (padded to 40 bytes) followed by this uint64 magic.
_TABLE_MAGIC = 0xDB4775248B80FB57
_FOOTER_SIZE = 48
# Every block is followed by 1 byte of compression type and a 4-byte masked CRC32C.
_BLOCK_TRAILER_SIZE = 5
_NO_COMPRESSION = 0
_MAX_VARINT_BYTES = 10

# tensorflow/core/framework/types.proto DataType -> numpy dtype (as stored: little-endian).
_DTYPES: dict[int, np.dtype[Any]] = {
    1: np.dtype("<f4"),  # DT_FLOAT
    2: np.dtype("<f8"),  # DT_DOUBLE
    3: np.dtype("<i4"),  # DT_INT32
    4: np.dtype("u1"),  # DT_UINT8
    5: np.dtype("<i2"),  # DT_INT16
    6: np.dtype("i1"),  # DT_INT8
    8: np.dtype("<c8"),  # DT_COMPLEX64
    9: np.dtype("<i8"),  # DT_INT64
    10: np.dtype("?"),  # DT_BOOL
    17: np.dtype("<u2"),  # DT_UINT16
    18: np.dtype("<c16"),  # DT_COMPLEX128
    19: np.dtype("<f2"),  # DT_HALF
    22: np.dtype("<u4"),  # DT_UINT32
    23: np.dtype("<u8"),  # DT_UINT64
}

# TF1 optimizer state: Adam slots are "<var>/Adam" and "<var>/Adam_1", and Adam keeps its bias
# correction accumulators in "beta1_power"/"beta2_power" (suffixed "_1", ... when a graph has
# several optimizers). None of these is needed for inference.
_OPTIMIZER_STATE = re.compile(r"(?:^|/)(?:Adam(?:_\d+)?|beta[12]_power(?:_\d+)?)$")


@dataclass(frozen=True)
class _Entry:
    """Where one tensor lives, decoded from a ``BundleEntryProto``."""

    dtype: int
    shape: tuple[int, ...]
    shard_id: int
    offset: int
    size: int
    partitioned: bool


def _read_varint(buf: bytes, pos: int, what: str) -> tuple[int, int]:
    """Decode a base-128 varint at ``pos``; return (value, position after it)."""
    result = 0
    for i in range(_MAX_VARINT_BYTES):
        if pos + i >= len(buf):
            raise ValueError(f"truncated varint in {what}")
        byte = buf[pos + i]
        result |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            return result, pos + i + 1
    raise ValueError(f"varint longer than {_MAX_VARINT_BYTES} bytes in {what}")


def _as_int64(value: int) -> int:
    """Reinterpret a decoded varint as a signed int64 (protobuf encodes negatives in 10 bytes)."""
    return value - (1 << 64) if value >= 1 << 63 else value


def _iter_proto_fields(buf: bytes, what: str) -> Iterator[tuple[int, int | bytes]]:
    """Yield (field number, value) of a serialized protobuf message.

    Only the wire types TensorFlow uses in checkpoint metadata occur: 0 (varint), 1 (fixed64),
    2 (length-delimited) and 5 (fixed32). A hand-written decoder avoids a protobuf dependency
    and its version pins.
    """
    pos = 0
    while pos < len(buf):
        tag, pos = _read_varint(buf, pos, what)
        field, wire_type = tag >> 3, tag & 7
        value: int | bytes
        if wire_type == 0:
            value, pos = _read_varint(buf, pos, what)
        elif wire_type == 1:
            if pos + 8 > len(buf):
                raise ValueError(f"truncated fixed64 field in {what}")
            (value,) = struct.unpack_from("<Q", buf, pos)
            pos += 8
        elif wire_type == 2:
            length, pos = _read_varint(buf, pos, what)
            if pos + length > len(buf):
                raise ValueError(f"truncated length-delimited field in {what}")
            value = buf[pos : pos + length]
            pos += length
        elif wire_type == 5:
            if pos + 4 > len(buf):
                raise ValueError(f"truncated fixed32 field in {what}")
            (value,) = struct.unpack_from("<I", buf, pos)
            pos += 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire_type} in {what}")
        yield field, value


def _parse_shape(buf: bytes, what: str) -> tuple[int, ...]:
    """Decode a ``TensorShapeProto``: repeated field 2 ``dim``, each with field 1 ``size``."""
    dims: list[int] = []
    for field, value in _iter_proto_fields(buf, what):
        if field == 2 and isinstance(value, bytes):
            size = 0
            for dim_field, dim_value in _iter_proto_fields(value, what):
                if dim_field == 1 and isinstance(dim_value, int):
                    size = _as_int64(dim_value)
            dims.append(size)
        elif field == 3 and value:
            raise ValueError(f"{what}: tensor of unknown rank cannot be read")
    if any(d < 0 for d in dims):
        raise ValueError(f"{what}: tensor has an unknown dimension {dims}")
    return tuple(dims)


def _parse_entry(buf: bytes, name: str) -> _Entry:
    """Decode a ``BundleEntryProto`` (fields 1 dtype, 2 shape, 3 shard_id, 4 offset, 5 size)."""
    what = f"BundleEntryProto of {name!r}"
    dtype = shard_id = offset = size = 0
    shape: tuple[int, ...] = ()
    partitioned = False
    for field, value in _iter_proto_fields(buf, what):
        if field == 2 and isinstance(value, bytes):
            shape = _parse_shape(value, what)
        elif field == 7:  # repeated TensorSliceProto: the variable is partitioned
            partitioned = True
        elif isinstance(value, int):
            if field == 1:
                dtype = value
            elif field == 3:
                shard_id = value
            elif field == 4:
                offset = value
            elif field == 5:
                size = value
    return _Entry(dtype, shape, shard_id, offset, size, partitioned)


def _read_block(table: bytes, handle: bytes, what: str) -> bytes:
    """Return the contents of the SSTable block addressed by a (varint offset, varint size)."""
    offset, pos = _read_varint(handle, 0, what)
    size, _ = _read_varint(handle, pos, what)
    end = offset + size
    if end + _BLOCK_TRAILER_SIZE > len(table):
        raise ValueError(
            f"{what} spans bytes {offset}..{end + _BLOCK_TRAILER_SIZE} but the index file has "
            f"only {len(table)} bytes (truncated file?)"
        )
    compression = table[end]
    if compression != _NO_COMPRESSION:
        raise ValueError(
            f"{what} uses compression type {compression}; only uncompressed blocks (type 0, "
            "what TensorFlow's checkpoint writer produces) are supported"
        )
    return table[offset:end]


def _iter_block_entries(block: bytes, what: str) -> Iterator[tuple[bytes, bytes]]:
    """Yield (key, value) from one block, undoing LevelDB's key prefix compression."""
    if len(block) < 4:
        raise ValueError(f"{what} is too short to hold its restart count")
    (num_restarts,) = struct.unpack_from("<I", block, len(block) - 4)
    limit = len(block) - 4 - 4 * num_restarts
    if limit < 0:
        raise ValueError(f"{what} claims {num_restarts} restart points, more than fit in it")
    pos = 0
    key = b""
    while pos < limit:
        shared, pos = _read_varint(block, pos, what)
        unshared, pos = _read_varint(block, pos, what)
        value_len, pos = _read_varint(block, pos, what)
        if shared > len(key) or pos + unshared + value_len > limit:
            raise ValueError(f"corrupt entry at byte {pos} of {what}")
        key = key[:shared] + block[pos : pos + unshared]
        pos += unshared
        yield key, block[pos : pos + value_len]
        pos += value_len


def _iter_table(table: bytes, path: Path) -> Iterator[tuple[bytes, bytes]]:
    """Yield every (key, value) of an SSTable file, in key order."""
    if len(table) < _FOOTER_SIZE:
        raise ValueError(
            f"{path} has {len(table)} bytes, fewer than the {_FOOTER_SIZE}-byte SSTable footer "
            "(truncated or not a TensorFlow checkpoint index)"
        )
    footer = table[-_FOOTER_SIZE:]
    (magic,) = struct.unpack_from("<Q", footer, _FOOTER_SIZE - 8)
    if magic != _TABLE_MAGIC:
        raise ValueError(
            f"{path} does not end with the SSTable magic number 0x{_TABLE_MAGIC:016x} "
            f"(found 0x{magic:016x}): not a TensorFlow V2 checkpoint index, or truncated"
        )
    # The footer starts with the metaindex handle (unused by TF) and then the index handle.
    _, pos = _read_varint(footer, 0, f"footer of {path}")
    _, pos = _read_varint(footer, pos, f"footer of {path}")
    index_handle = footer[pos:]
    index_block = _read_block(table, index_handle, f"index block of {path}")
    for n, (_, handle) in enumerate(_iter_block_entries(index_block, f"index block of {path}")):
        what = f"data block {n} of {path}"
        yield from _iter_block_entries(_read_block(table, handle, what), what)


def _num_shards(header: bytes, path: Path) -> int:
    """Read ``BundleHeaderProto`` (1 num_shards, 2 endianness); refuse big-endian bundles."""
    num_shards = 1
    for field, value in _iter_proto_fields(header, f"BundleHeaderProto of {path}"):
        if field == 1 and isinstance(value, int):
            num_shards = value
        elif field == 2 and value != 0:
            raise ValueError(f"{path}: big-endian checkpoints are not supported")
    return num_shards


def _resolve_prefix(prefix: str | Path) -> str:
    """Turn the caller's prefix into the string that the file names are appended to.

    musicnn's files are literally named ``.index`` and ``.data-00000-of-00001`` (prefix
    ``<dir>/``), and ``Path`` drops a trailing slash, so a directory is taken to mean ``<dir>/``.
    A path to the ``.index`` file itself is accepted too.
    """
    text = str(prefix)
    if Path(text).is_dir():
        return text.rstrip("/") + "/"
    if text.endswith(".index"):
        return text[: -len(".index")]
    return text


def _is_optimizer_state(name: str) -> bool:
    return _OPTIMIZER_STATE.search(name) is not None


def read_tf_checkpoint(
    prefix: str | Path, *, include_optimizer_state: bool = False
) -> dict[str, npt.NDArray[Any]]:
    """Read every tensor of a TensorFlow V2 checkpoint into numpy arrays.

    Args:
        prefix: the checkpoint prefix, e.g. ``"model.ckpt-1000"``, or for musicnn the checkpoint
            directory (its files are named ``<dir>/.index``); see ``_resolve_prefix``.
        include_optimizer_state: also return Adam's slot variables (``<var>/Adam``,
            ``<var>/Adam_1``) and ``beta1_power``/``beta2_power``. Off by default because only
            model weights are needed for inference; for ``MTT_musicnn`` this leaves the 64 model
            tensors (8 conv and 2 dense kernel/bias pairs, 11 batch-norm layers × 4).

    Returns:
        Variable name -> array in native byte order with the stored dtype and shape, in the
        checkpoint's (sorted) key order. Conv kernels stay in TF's HWIO layout.

    Raises:
        FileNotFoundError: the ``.index`` file or a needed ``.data`` shard is missing.
        ValueError: the files are truncated, corrupt or use an unsupported feature.
    """
    base = _resolve_prefix(prefix)
    index_path = Path(base + ".index")
    if not index_path.is_file():
        raise FileNotFoundError(
            f"TensorFlow checkpoint index not found: {index_path} (prefix {str(prefix)!r}; for "
            "musicnn pass the checkpoint directory, whose files are named '.index' etc.)"
        )
    table = index_path.read_bytes()

    num_shards = 1
    entries: dict[str, _Entry] = {}
    for key, value in _iter_table(table, index_path):
        if key == b"":
            num_shards = _num_shards(value, index_path)
            continue
        name = key.decode("utf-8")
        if not include_optimizer_state and _is_optimizer_state(name):
            continue
        entries[name] = _parse_entry(value, name)

    shard_files: dict[int, BinaryIO] = {}
    try:
        tensors: dict[str, npt.NDArray[Any]] = {}
        for name, entry in entries.items():
            if entry.shard_id not in shard_files:
                shard_files[entry.shard_id] = _open_shard(base, entry.shard_id, num_shards, name)
            tensors[name] = _read_tensor(shard_files[entry.shard_id], entry, name)
        return tensors
    finally:
        for handle in shard_files.values():
            handle.close()


def _open_shard(base: str, shard_id: int, num_shards: int, name: str) -> BinaryIO:
    if shard_id >= num_shards:
        raise ValueError(f"{name!r} is in shard {shard_id} but the header declares {num_shards}")
    path = Path(f"{base}.data-{shard_id:05d}-of-{num_shards:05d}")
    if not path.is_file():
        raise FileNotFoundError(
            f"checkpoint data shard not found: {path} (needed for variable {name!r})"
        )
    return path.open("rb")


def _read_tensor(shard: BinaryIO, entry: _Entry, name: str) -> npt.NDArray[Any]:
    if entry.partitioned:
        raise ValueError(f"{name!r} is a partitioned variable; slices are not supported")
    dtype = _DTYPES.get(entry.dtype)
    if dtype is None:
        raise ValueError(f"{name!r} has unsupported TensorFlow DataType enum {entry.dtype}")
    expected = math.prod(entry.shape) * dtype.itemsize
    if entry.size != expected:
        raise ValueError(
            f"{name!r}: entry says {entry.size} bytes but shape {entry.shape} of {dtype} needs "
            f"{expected}"
        )
    shard.seek(entry.offset)
    raw = shard.read(entry.size)
    if len(raw) != entry.size:
        raise ValueError(
            f"{name!r}: data shard {shard.name} ends before bytes "
            f"{entry.offset}..{entry.offset + entry.size} (truncated file?)"
        )
    array = np.frombuffer(raw, dtype=dtype).reshape(entry.shape)
    return array.astype(dtype.newbyteorder("="), copy=True)


def locate_musicnn_checkpoint(name: str = "MTT_musicnn") -> Path:
    """Find a checkpoint directory inside an installed ``musicnn`` distribution.

    The package's own modules import TensorFlow at import time, so it must never be imported:
    ``importlib.util.find_spec`` on a top-level name only consults the path finders (it does not
    execute ``musicnn/__init__.py``), and ``importlib.metadata`` is the fallback for unusual
    installs. ``pip install --no-deps musicnn==0.1.0`` is enough to provide the files.

    Returns the directory, which ``read_tf_checkpoint`` accepts as the prefix.
    """
    if name not in MUSICNN_MODELS:
        raise ValueError(f"unknown musicnn model {name!r}; expected one of {MUSICNN_MODELS}")
    candidates: list[Path] = []
    try:
        spec = importlib.util.find_spec("musicnn")
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        candidates.extend(Path(p) / name for p in spec.submodule_search_locations)
    try:
        dist = importlib.metadata.distribution("musicnn")
    except importlib.metadata.PackageNotFoundError:
        pass
    else:
        candidates.append(Path(str(dist.locate_file(f"musicnn/{name}"))))
    for directory in candidates:
        if (directory / ".index").is_file():
            return directory
    if not candidates:
        raise FileNotFoundError(
            "the musicnn package is not installed in this environment; install its data files "
            "without TensorFlow with: pip install --no-deps musicnn==0.1.0"
        )
    searched = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(f"musicnn checkpoint {name!r} not found (looked in {searched})")


def main(argv: Sequence[str] | None = None) -> int:
    """List a checkpoint's variables with shapes: a quick way to inspect what the reader sees."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument(
        "prefix", nargs="?", help="checkpoint prefix or directory (default: musicnn MTT_musicnn)"
    )
    parser.add_argument("--optimizer-state", action="store_true", help="include Adam state")
    args = parser.parse_args(argv)
    prefix = args.prefix if args.prefix is not None else locate_musicnn_checkpoint()
    tensors = read_tf_checkpoint(prefix, include_optimizer_state=args.optimizer_state)
    for var_name, array in tensors.items():
        print(f"{var_name}\t{list(array.shape)}\t{array.dtype}")
    total = sum(array.size for array in tensors.values())
    print(f"{len(tensors)} tensors, {total:,} values", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
