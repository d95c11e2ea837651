"""v3 training data: crops of precomputed log-mels at random offsets, new ones every epoch.

Reads the v3 cache (`training.distill.patches`). For a training track of P labelled patches
(teacher scores every `hop` mel frames: half a window, or a quarter for the sources labelled
first), an epoch draws about one crop per window of audio at uniformly random frame offsets in
`[0, hop * (P - 1)]`, so over epochs every part of every track is seen and no two epochs show
the same examples.

A crop's soft target is the mean of the teacher outputs over the patches it covers, weighted
by how much of each it covers: a crop at offset `f` lies between patch `p = f // hop` and
`p + 1` and overlaps them by `1 - a` and `a` of a hop (`a = f % hop / hop`), so its target is
`(1 - a) * y_p + a * y_(p+1)`, exactly the teacher's own output when the crop is a patch.
Ground truth (a render's instruments, voices and drums, a recording's voices) replaces the
teachers' guesses where known, as in v2, and is interpolated the same way.

Real music and renders are weighed by a per-example loss weight (`render_weight`): renders
keep their natural share of the crops (their share of the audio) and each counts that much.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from training.data.distilled import soft_targets
from training.distill.cache import read_index
from training.distill.data import TEACHER_POSITIVE
from training.distill.patches import HOP_FRAMES, MEL_HOP, WINDOW_FRAMES, patch_teacher_file
from training.distill.teachers import (
    MEAN,
    TAXONOMIES,
    needed_teachers,
    teacher_file,
    teachers_of,
)


@dataclass(frozen=True)
class Track:
    """One cached track.

    Attributes:
        source_id: The cache folder's name.
        kind: "music" or "render".
        mel: (frames, n_mels) float16 log-mel, memory-mapped.
        targets: (rows, 100) float32 soft targets, one row per labelled patch.
        truth: (rows, 100) int8 ground truth where known, else -1.
        teacher: (rows, 100) float32 the chosen teachers' scores (no ground truth).
        frames: First mel frame of each row (training: every `hop`; valid/test: the
            evaluated windows).
    """

    source_id: str
    kind: str
    mel: np.ndarray
    targets: np.ndarray
    truth: np.ndarray
    teacher: np.ndarray
    frames: np.ndarray

    @property
    def hop(self) -> int:
        """Mel frames between two labelled training rows."""
        return int(self.frames[1] - self.frames[0]) if len(self.frames) > 1 else HOP_FRAMES


def _combined(folder: Path, choices: Mapping[str, str], patch_level: bool) -> np.ndarray:
    """(rows, 100) the chosen teachers' scores: per vocabulary one teacher's or the mean."""
    parts = []
    for taxonomy in TAXONOMIES:
        members = teachers_of(taxonomy)
        picked = [t for t in members if choices[taxonomy] in (MEAN, t.name)]
        files = [
            patch_teacher_file(folder, t) if patch_level else teacher_file(folder, t)
            for t in picked
        ]
        parts.append(np.mean([np.load(f) for f in files], axis=0))
    return np.concatenate(parts, axis=1).astype(np.float32)


def _ready(folder: Path, choices: Mapping[str, str], patch_level: bool) -> bool:
    names = needed_teachers(dict(choices))
    prefix = "patch-teacher" if patch_level else "teacher"
    labels = "patch-labels.npy" if patch_level else "labels.npy"
    files = [folder / "mel.npy", folder / "starts.npy", folder / labels]
    return all(f.is_file() for f in files) and all(
        (folder / f"{prefix}-{name}.npy").is_file() for name in names
    )


def load_tracks(
    cache: Path,
    split: str,
    choices: Mapping[str, str],
    only: Sequence[str] | None = None,
) -> list[Track]:
    """Every track of `split` whose chosen teachers' scores are cached (or those of `only`),
    sorted by source id."""
    patch_level = split == "train"
    rows = [r for r in read_index(cache).values() if r["split"] == split]
    wanted = set(only) if only is not None else None
    tracks = []
    for row in sorted(rows, key=lambda r: str(r["source_id"])):
        source_id = str(row["source_id"])
        folder = cache / source_id
        if wanted is not None and source_id not in wanted:
            continue
        if not _ready(folder, choices, patch_level):
            continue
        teacher = _combined(folder, choices, patch_level)
        truth = np.load(folder / ("patch-labels.npy" if patch_level else "labels.npy"))
        starts = np.load(folder / "starts.npy")
        tracks.append(
            Track(
                source_id=source_id,
                kind=str(row["kind"]),
                mel=np.load(folder / "mel.npy", mmap_mode="r"),
                targets=soft_targets(teacher, truth),
                truth=truth,
                teacher=teacher,
                frames=(starts // MEL_HOP).astype(np.int64),
            )
        )
    return tracks


def crop_target(targets: np.ndarray, offset: int, hop: int = HOP_FRAMES) -> np.ndarray:
    """(C,) the target of a crop starting `offset` frames into a track whose patch rows are
    `targets` (P, C), `hop` frames apart: the coverage-weighted mean of the two patches it
    lies between."""
    patch, rest = divmod(int(offset), hop)
    if patch >= len(targets) - 1 or rest == 0:
        return np.asarray(targets[min(patch, len(targets) - 1)], dtype=np.float32)
    share = rest / hop
    return ((1.0 - share) * targets[patch] + share * targets[patch + 1]).astype(np.float32)


def crop_mel(mel: np.ndarray, offset: int) -> np.ndarray:
    """(n_mels, WINDOW_FRAMES) float32 log-mel of the crop at `offset` frames."""
    return np.asarray(mel[offset : offset + WINDOW_FRAMES], dtype=np.float32).T


@dataclass(frozen=True)
class EpochPlan:
    """The crops of one epoch, in the order they are trained on: (track index, frame offset)."""

    track: np.ndarray
    offset: np.ndarray

    def __len__(self) -> int:
        return len(self.track)


def plan_epoch(tracks: Sequence[Track], seed: int, crops_per_window: float = 1.0) -> EpochPlan:
    """About `crops_per_window` crops per window of each track's audio, at uniformly random
    offsets, shuffled; the same `seed` gives the same plan (a resumed epoch continues it)."""
    rng = np.random.default_rng(seed)
    track_ids: list[np.ndarray] = []
    offsets: list[np.ndarray] = []
    for k, track in enumerate(tracks):
        expected = crops_per_window * track.mel.shape[0] / WINDOW_FRAMES
        count = max(1, int(expected) + int(rng.random() < expected - int(expected)))
        last = track.hop * (len(track.targets) - 1)
        track_ids.append(np.full(count, k))
        offsets.append(rng.integers(0, last + 1, size=count))
    order = rng.permutation(sum(len(t) for t in track_ids))
    return EpochPlan(np.concatenate(track_ids)[order], np.concatenate(offsets)[order])


@dataclass(frozen=True)
class Batch:
    log_mel: torch.Tensor  # (B, n_mels, WINDOW_FRAMES)
    targets: torch.Tensor  # (B, 100)
    weights: torch.Tensor  # (B,) loss weight of each example


def batches(
    tracks: Sequence[Track],
    plan: EpochPlan,
    batch_size: int,
    render_weight: float,
    start: int = 0,
) -> Iterator[Batch]:
    """The plan's crops in batches, from batch number `start` on."""
    for begin in range(start * batch_size, len(plan), batch_size):
        rows = range(begin, min(begin + batch_size, len(plan)))
        picked = [(tracks[int(plan.track[i])], int(plan.offset[i])) for i in rows]
        yield Batch(
            log_mel=torch.from_numpy(np.stack([crop_mel(t.mel, o) for t, o in picked])),
            targets=torch.from_numpy(
                np.stack([crop_target(t.targets, o, t.hop) for t, o in picked])
            ),
            weights=torch.tensor(
                [render_weight if t.kind == "render" else 1.0 for t, _ in picked],
                dtype=torch.float32,
            ),
        )


@dataclass(frozen=True)
class EvalSet:
    """The evaluated windows of a valid or test split, as log-mel crops and labels."""

    tracks: list[Track]

    def log_mels(self) -> Iterator[np.ndarray]:
        for track in self.tracks:
            for frame in track.frames:
                yield crop_mel(track.mel, int(frame))

    def __len__(self) -> int:
        return sum(len(t.frames) for t in self.tracks)

    @property
    def teacher(self) -> np.ndarray:
        return np.concatenate([t.teacher for t in self.tracks])

    @property
    def truth(self) -> np.ndarray:
        return np.concatenate([t.truth for t in self.tracks])

    @property
    def targets(self) -> np.ndarray:
        return np.concatenate([t.targets for t in self.tracks])

    @property
    def source_ids(self) -> np.ndarray:
        return np.concatenate([np.full(len(t.frames), t.source_id) for t in self.tracks])

    @property
    def kinds(self) -> np.ndarray:
        return np.concatenate([np.full(len(t.frames), t.kind) for t in self.tracks])

    def agreement_labels(self) -> np.ndarray:
        """0/1: teacher >= 0.3, or the ground truth where it is known (v2's definition)."""
        teacher = (self.teacher >= TEACHER_POSITIVE).astype(np.int8)
        return np.where(self.truth >= 0, self.truth, teacher)
