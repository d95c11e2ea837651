"""The cached corpus as tensors: windows, soft targets and agreement labels per split."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from model.base import TaggingModel
from model.inference import predict_windows
from training import metrics
from training.data.distilled import soft_targets
from training.distill.cache import read_index
from training.distill.teachers import TAG_IDS, TEACHERS, combined_scores, read_choice, teacher_file

TEACHER_POSITIVE = 0.3  # a teacher score at or above this counts as a positive label
MIN_POSITIVES = 10  # agreement is averaged over tags with at least this many positive windows


def pcm_to_float(pcm: np.ndarray) -> torch.Tensor:
    """int16 windows of the cache as float32 waveforms in [-1, 1]."""
    return torch.from_numpy(pcm.astype(np.float32) / 32767.0)


def score_split(
    model: TaggingModel,
    split: Split,
    *,
    device: torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> np.ndarray:
    """(N, C) probabilities of `model` for every window of `split`."""
    windows = pcm_to_float(split.windows)
    return predict_windows(
        model, windows, batch_size=64, device=device, autocast_dtype=dtype
    ).numpy()


def frequent_tag_auc(labels: np.ndarray, scores: np.ndarray) -> tuple[float | None, list[str]]:
    """Macro ROC-AUC over the tags with at least MIN_POSITIVES positives, and those tags."""
    return metrics.frequent_tag_auc(labels, scores, TAG_IDS, MIN_POSITIVES)


@dataclass
class Split:
    """One split of the cache, held in memory.

    Attributes:
        windows: (N, window_samples) int16 audio windows (the student preset's).
        teacher: (N, 100) the chosen teachers' probabilities (MTT tags, then MSD tags).
        labels: (N, 100) ground truth where known (1/0), else -1.
        teachers: Each teacher's own (N, 50) probabilities, by teacher name (those that
            labelled the whole split).
        source_ids: (N,) which source each window came from.
        kinds: (N,) "music" or "render".
    """

    windows: np.ndarray
    teacher: np.ndarray
    labels: np.ndarray
    source_ids: np.ndarray
    kinds: np.ndarray
    teachers: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.windows)

    def soft_targets(self) -> np.ndarray:
        """Teacher probabilities, replaced by ground truth where the render's labels are known."""
        return soft_targets(self.teacher, self.labels)

    def agreement_labels(self) -> np.ndarray:
        """0/1 labels: teacher >= 0.3, or the ground truth where it is known."""
        teacher = (self.teacher >= TEACHER_POSITIVE).astype(np.int8)
        return np.where(self.labels >= 0, self.labels, teacher)


def load_split(cache: Path, split: str) -> Split:
    rows = [row for row in read_index(cache).values() if row["split"] == split]
    if not rows:
        raise ValueError(f"no cached sources in split {split!r} under {cache}")
    choices = read_choice(cache)["choices"]
    parts: dict[str, list[np.ndarray]] = {"windows": [], "teacher": [], "labels": []}
    own: dict[str, list[np.ndarray]] = {teacher.name: [] for teacher in TEACHERS}
    ids: list[np.ndarray] = []
    kinds: list[np.ndarray] = []
    for row in sorted(rows, key=lambda r: str(r["source_id"])):
        folder = cache / str(row["source_id"])
        for name in ("windows", "labels"):
            parts[name].append(np.load(folder / f"{name}.npy"))
        parts["teacher"].append(combined_scores(folder, choices))
        for teacher in TEACHERS:
            if teacher_file(folder, teacher).is_file():
                own[teacher.name].append(np.load(teacher_file(folder, teacher)))
        n = len(parts["windows"][-1])
        ids.append(np.full(n, str(row["source_id"])))
        kinds.append(np.full(n, str(row["kind"])))
    # A teacher that did not label every source of the split (a losing one, on train) is left out.
    own = {name: arrays for name, arrays in own.items() if len(arrays) == len(rows)}
    return Split(
        windows=np.concatenate(parts["windows"]),
        teacher=np.concatenate(parts["teacher"]),
        labels=np.concatenate(parts["labels"]),
        source_ids=np.concatenate(ids),
        kinds=np.concatenate(kinds),
        teachers={name: np.concatenate(arrays) for name, arrays in own.items()},
    )
