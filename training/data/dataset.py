"""PyTorch datasets over a prepared dataset: random training crops and evaluation crops.

Crop positions are drawn from a generator seeded by (seed, epoch, clip), not from a process's
global RNG, so they do not depend on the number of DataLoader workers or DDP ranks, and a resumed
run draws exactly the crops the uninterrupted run would have.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from model.inference import evaluation_crops
from training.data.store import DatasetError, PreparedDataset


def target_array(data: PreparedDataset, soft: bool) -> np.ndarray:
    """(N, C) what the loss compares with: the soft targets, or the 0/1 labels.

    Raises:
        DatasetError: soft targets asked of a dataset prepared without them.
    """
    if not soft:
        return data.labels
    if data.targets is None:
        raise DatasetError(
            f'{data.root} has no soft targets (targets = "soft"): prepare it with '
            "`python -m training prepare-distill --soft`"
        )
    return data.targets


class RandomCrops(Dataset[tuple[Tensor, Tensor]]):
    """One uniformly random `window`-sample crop per clip and epoch (Won et al.'s training input).

    Clips shorter than the window are zero-padded at the end.

    Args:
        data: The prepared dataset.
        indices: Clips to draw from (e.g. `data.split_indices("train")`).
        window: Crop length in samples (`model.audio.window_samples`).
        seed: Run seed.
        soft: Yield the dataset's soft targets instead of its 0/1 labels.

    Item:
        waveform (window,) float32, labels or soft targets (C,) float32
    """

    def __init__(
        self,
        data: PreparedDataset,
        indices: np.ndarray,
        window: int,
        seed: int,
        *,
        soft: bool = False,
    ) -> None:
        self.data = data
        self.targets = target_array(data, soft)
        self.indices = np.asarray(indices, dtype=np.int64)
        self.window = window
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.indices)

    def crop_start(self, item: int) -> int:
        clip = int(self.indices[item])
        slack = max(int(self.data.lengths[clip]) - self.window, 0)
        rng = np.random.default_rng([self.seed, self.epoch, clip])
        return int(rng.integers(0, slack + 1))

    def __getitem__(self, item: int) -> tuple[Tensor, Tensor]:
        clip = int(self.indices[item])
        samples = self.data.read(clip, self.crop_start(item), self.window)
        labels = self.targets[clip].astype(np.float32)
        return torch.from_numpy(samples), torch.from_numpy(labels)


class EvaluationClips(Dataset[tuple[Tensor, Tensor, int]]):
    """Won et al.'s evaluation input: `n_crops` evenly spaced windows of each whole clip.

    Item:
        crops (n_crops, window) float32, labels or soft targets (C,) float32, clip index
    """

    def __init__(
        self,
        data: PreparedDataset,
        indices: np.ndarray,
        window: int,
        n_crops: int = 16,
        *,
        soft: bool = False,
    ) -> None:
        self.data = data
        self.targets = target_array(data, soft)
        self.indices = np.asarray(indices, dtype=np.int64)
        self.window = window
        self.n_crops = n_crops

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, item: int) -> tuple[Tensor, Tensor, int]:
        clip = int(self.indices[item])
        waveform = torch.from_numpy(self.data.read(clip))
        crops = evaluation_crops(waveform, self.window, self.n_crops)
        labels = torch.from_numpy(self.targets[clip].astype(np.float32))
        return crops, labels, clip
