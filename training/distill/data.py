"""The cached corpus as tensors: windows, soft targets and agreement labels per split."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from training.distill.cache import read_index

TEACHER_POSITIVE = 0.3  # a teacher score at or above this counts as a positive label


@dataclass
class Split:
    """One split of the cache, held in memory.

    Attributes:
        windows: (N, 59049) int16 audio windows.
        teacher: (N, C) teacher probabilities.
        labels: (N, C) ground truth where known (1/0), else -1.
        source_ids: (N,) which source each window came from.
        kinds: (N,) "music" or "render".
    """

    windows: np.ndarray
    teacher: np.ndarray
    labels: np.ndarray
    source_ids: np.ndarray
    kinds: np.ndarray

    def __len__(self) -> int:
        return len(self.windows)

    def soft_targets(self) -> np.ndarray:
        """Teacher probabilities, replaced by ground truth where the render's labels are known."""
        return np.where(self.labels >= 0, self.labels, self.teacher).astype(np.float32)

    def agreement_labels(self) -> np.ndarray:
        """0/1 labels: teacher >= 0.3, or the ground truth where it is known."""
        teacher = (self.teacher >= TEACHER_POSITIVE).astype(np.int8)
        return np.where(self.labels >= 0, self.labels, teacher)


def load_split(cache: Path, split: str) -> Split:
    rows = [row for row in read_index(cache).values() if row["split"] == split]
    if not rows:
        raise ValueError(f"no cached sources in split {split!r} under {cache}")
    parts: dict[str, list[np.ndarray]] = {"windows": [], "teacher": [], "labels": []}
    ids: list[np.ndarray] = []
    kinds: list[np.ndarray] = []
    for row in sorted(rows, key=lambda r: str(r["source_id"])):
        folder = cache / str(row["source_id"])
        for name in parts:
            parts[name].append(np.load(folder / f"{name}.npy"))
        n = len(parts["windows"][-1])
        ids.append(np.full(n, str(row["source_id"])))
        kinds.append(np.full(n, str(row["kind"])))
    return Split(
        windows=np.concatenate(parts["windows"]),
        teacher=np.concatenate(parts["teacher"]),
        labels=np.concatenate(parts["labels"]),
        source_ids=np.concatenate(ids),
        kinds=np.concatenate(kinds),
    )


class WindowDataset(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """(float32 window, soft target) pairs of one split."""

    def __init__(self, split: Split) -> None:
        self.windows = split.windows
        self.targets = split.soft_targets()

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        window = torch.from_numpy(self.windows[index].astype(np.float32) / 32767.0)
        return window, torch.from_numpy(self.targets[index])
