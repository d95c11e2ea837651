"""The prepared-dataset cache and the training/evaluation crops read from it."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from model.audio.decode import decode_audio
from model.inference import evaluation_crops
from model.tags import custom_vocabulary
from tests.training.fakes import FakeMtat
from training.data.dataset import EvaluationClips, RandomCrops
from training.data.store import DatasetError, DatasetWriter, PreparedDataset

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TAGS = custom_vocabulary(["a", "b"])


def _write(root: Path, dtype: str, clips: dict[str, np.ndarray]) -> PreparedDataset:
    writer = DatasetWriter(root, sample_rate=16000, dtype=dtype, n_classes=2)  # type: ignore[arg-type]
    for i, (key, samples) in enumerate(clips.items()):
        split = ("train", "valid", "test")[i % 3]
        writer.add(key, f"{key}.wav", samples, np.array([i % 2, 1], dtype=np.uint8), split)
    return writer.finish(TAGS, source={"dataset": "unit test"})


@pytest.mark.parametrize(("dtype", "tolerance"), [("int16", 1 / 32767), ("float16", 1e-3)])
def test_round_trip_is_close_and_compact(tmp_path: Path, dtype: str, tolerance: float) -> None:
    rng = np.random.default_rng(0)
    clips = {f"clip{i}": rng.uniform(-1, 1, 1000 + 37 * i).astype(np.float32) for i in range(3)}
    clips["clip0"][:3] = [1.5, -2.0, 0.0]  # beyond full scale: clipped, not wrapped
    data = _write(tmp_path / "ds", dtype, clips)
    assert (tmp_path / "ds" / f"audio.{dtype}").stat().st_size == 2 * sum(map(len, clips.values()))
    assert data.info["clips"] == {"train": 1, "valid": 1, "test": 1}
    for index, (key, samples) in enumerate(clips.items()):
        assert data.keys[index] == key
        np.testing.assert_allclose(data.read(index), np.clip(samples, -1, 1), atol=tolerance)
    # Windows past the end are zero-padded.
    tail = data.read(0, start=990, length=20)
    np.testing.assert_allclose(tail[:10], clips["clip0"][990:], atol=tolerance)
    assert not tail[10:].any()
    # Workers get a copy without the memory map, which they re-open lazily.
    data.read(1)
    clone = pickle.loads(pickle.dumps(data))
    assert clone._audio is None
    np.testing.assert_array_equal(clone.read(1), data.read(1))


def test_writer_and_reader_errors(tmp_path: Path) -> None:
    _write(tmp_path / "ds", "int16", {"x": np.zeros(10, np.float32), "y": np.zeros(10, np.float32)})
    with pytest.raises(DatasetError, match="already holds a prepared dataset"):
        DatasetWriter(tmp_path / "ds", sample_rate=16000, dtype="int16", n_classes=2)
    with pytest.raises(DatasetError, match="not a prepared dataset"):
        PreparedDataset.open(tmp_path / "nothing")
    writer = DatasetWriter(tmp_path / "ds2", sample_rate=16000, dtype="int16", n_classes=2)
    writer.add("only", "only.wav", np.zeros(5, np.float32), np.array([1, 0], np.uint8), "train")
    with pytest.raises(DatasetError, match="the valid split is empty"):
        writer.finish(TAGS, source={})
    assert not (tmp_path / "ds2" / "dataset.json").exists()


def test_random_crops_are_reproducible_and_in_bounds(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    clips = {"long": rng.uniform(-1, 1, 5000).astype(np.float32)}
    clips["short"] = rng.uniform(-1, 1, 300).astype(np.float32)
    data = _write(tmp_path / "ds", "float16", clips)
    crops = RandomCrops(data, np.array([0, 1]), window=1000, seed=7)
    starts = set()
    for epoch in range(20):
        crops.set_epoch(epoch)
        start = crops.crop_start(0)
        assert 0 <= start <= 4000
        starts.add(start)
        waveform, labels = crops[0]
        expected = torch.from_numpy(data.read(0, start, 1000))
        assert torch.equal(waveform, expected)
        assert labels.tolist() == [0.0, 1.0]
    assert len(starts) > 15  # a new crop every epoch
    crops.set_epoch(3)
    again = RandomCrops(data, np.array([0, 1]), window=1000, seed=7)
    again.set_epoch(3)
    assert crops.crop_start(0) == again.crop_start(0)  # depends on (seed, epoch, clip) only
    short, _ = crops[1]
    assert short.shape == (1000,)
    assert not short[300:].any()


def test_evaluation_clips_follow_won_protocol(prepared: Path, fake_mtat: FakeMtat) -> None:
    data = PreparedDataset.open(prepared)
    valid = data.split_indices("valid")
    clips = EvaluationClips(data, valid, window=59049, n_crops=16)
    crops, labels, index = clips[0]
    assert crops.shape == (16, 59049)
    assert index == valid[0]
    waveform = torch.from_numpy(data.read(index))
    assert torch.equal(crops, evaluation_crops(waveform, 59049, 16))
    row = fake_mtat.mp3_paths.index(str(data.keys[index]))
    assert labels.tolist() == fake_mtat.labels[row].astype(np.float32).tolist()
    # The cache holds what the service's decoder returns for the same mp3, up to int16 rounding.
    decoded = decode_audio(fake_mtat.root / str(data.keys[index])).samples
    np.testing.assert_allclose(waveform.numpy(), np.clip(decoded, -1, 1), atol=1 / 32767)
