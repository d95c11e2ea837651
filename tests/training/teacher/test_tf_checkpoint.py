"""The TensorFlow tensor-bundle reader, against a checkpoint written byte by byte here.

The writer below follows the formats the reader's docstring names (LevelDB SSTable, TF's
BundleHeaderProto and BundleEntryProto), so every number read back is one written by hand.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from training.teacher.tf_checkpoint import read_tf_checkpoint

MAGIC = 0xDB4775248B80FB57
DT_FLOAT, DT_INT32 = 1, 3


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def field_varint(number: int, value: int) -> bytes:
    return varint(number << 3) + varint(value)


def field_bytes(number: int, value: bytes) -> bytes:
    return varint((number << 3) | 2) + varint(len(value)) + value


def entry_proto(dtype: int, shape: tuple[int, ...], offset: int, size: int) -> bytes:
    dims = b"".join(field_bytes(2, field_varint(1, d)) for d in shape)
    return (
        field_varint(1, dtype)
        + field_bytes(2, dims)
        + field_varint(3, 0)
        + field_varint(4, offset)
        + field_varint(5, size)
    )


def block(items: list[tuple[bytes, bytes]]) -> bytes:
    # No prefix sharing and a single restart point: valid LevelDB, simplest to write.
    body = b"".join(varint(0) + varint(len(k)) + varint(len(v)) + k + v for k, v in items)
    return body + struct.pack("<I", 0) + struct.pack("<I", 1)


def write_checkpoint(prefix: str | Path, tensors: dict[str, np.ndarray]) -> None:
    data = bytearray()
    items = [(b"", field_varint(1, 1))]  # BundleHeaderProto: one shard, little-endian
    for name in sorted(tensors):
        array = tensors[name]
        dtype = DT_FLOAT if array.dtype == np.float32 else DT_INT32
        raw = array.astype(array.dtype.newbyteorder("<")).tobytes()
        items.append((name.encode(), entry_proto(dtype, array.shape, len(data), len(raw))))
        data += raw
    data_block = block(items)
    table = data_block + b"\x00\x00\x00\x00\x00"  # trailer: no compression, unchecked CRC
    index_handle = varint(0) + varint(len(data_block))
    index_block = block([(items[-1][0], index_handle)])
    index_offset = len(table)
    table += index_block + b"\x00\x00\x00\x00\x00"
    handles = varint(0) + varint(0) + varint(index_offset) + varint(len(index_block))
    table += handles.ljust(40, b"\x00") + struct.pack("<Q", MAGIC)
    Path(f"{prefix}.index").write_bytes(bytes(table))
    Path(f"{prefix}.data-00000-of-00001").write_bytes(bytes(data))


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    prefix = tmp_path / "model.ckpt-7"
    write_checkpoint(
        prefix,
        {
            "conv/kernel": np.arange(24, dtype=np.float32).reshape(2, 3, 1, 4),
            "conv/kernel/Adam": np.ones((2, 3, 1, 4), dtype=np.float32),
            "dense/bias": np.array([0.5, -1.25], dtype=np.float32),
            "global_step": np.array(7, dtype=np.int32),
            "beta1_power": np.array(0.9, dtype=np.float32),
        },
    )
    return prefix


def test_weights_come_back_with_their_names_shapes_and_values(checkpoint: Path) -> None:
    tensors = read_tf_checkpoint(checkpoint)
    assert list(tensors) == ["conv/kernel", "dense/bias", "global_step"]
    assert tensors["conv/kernel"].shape == (2, 3, 1, 4)
    assert tensors["conv/kernel"][1, 2, 0, 3] == 23.0
    assert tensors["dense/bias"].tolist() == [0.5, -1.25]
    assert tensors["global_step"].dtype == np.int32
    assert int(tensors["global_step"]) == 7


def test_optimizer_state_is_read_only_when_asked_for(checkpoint: Path) -> None:
    tensors = read_tf_checkpoint(checkpoint, include_optimizer_state=True)
    assert sorted(tensors) == [
        "beta1_power",
        "conv/kernel",
        "conv/kernel/Adam",
        "dense/bias",
        "global_step",
    ]
    assert float(tensors["beta1_power"]) == pytest.approx(0.9)


def test_the_index_file_itself_is_accepted_as_the_prefix(checkpoint: Path) -> None:
    tensors = read_tf_checkpoint(f"{checkpoint}.index")
    assert tensors["dense/bias"].tolist() == [0.5, -1.25]


def test_a_missing_data_shard_is_named(checkpoint: Path) -> None:
    Path(f"{checkpoint}.data-00000-of-00001").unlink()
    with pytest.raises(FileNotFoundError, match="data-00000-of-00001"):
        read_tf_checkpoint(checkpoint)


def test_a_file_without_the_sstable_magic_is_refused(tmp_path: Path) -> None:
    prefix = tmp_path / "broken"
    Path(f"{prefix}.index").write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match="magic number"):
        read_tf_checkpoint(prefix)


def test_a_missing_index_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="index not found"):
        read_tf_checkpoint(tmp_path / "nothing")
