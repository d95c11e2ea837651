"""Hand-written distillation caches: the on-disk layout of `training.distill.cache`, with
teacher scores chosen by the test (the real labelling runs in test_distill.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

N_TAGS = 100  # the two-vocabulary model: 50 MTT tags, then 50 MSD tags
MSD = 50  # column of the first MSD tag


def write_source(
    folder: Path,
    pcm: np.ndarray,
    mtt: np.ndarray,
    truth: np.ndarray,
    mtt_vgg: np.ndarray | None = None,
) -> None:
    """One cached source whose MTT teachers score `mtt` (N, 50) (MTT_vgg: `mtt_vgg` if given)
    and MSD teachers 0.05; `truth` is (N, 100) with -1 where unknown."""
    folder.mkdir(parents=True)
    np.save(folder / "windows.npy", pcm)
    np.save(folder / "labels.npy", truth.astype(np.int8))
    msd = np.full((len(pcm), 50), 0.05, dtype=np.float32)
    for name, scores in [
        ("mtt_musicnn", mtt),
        ("mtt_vgg", mtt if mtt_vgg is None else mtt_vgg),
        ("msd_musicnn", msd),
        ("msd_vgg", msd),
    ]:
        np.save(folder / f"teacher-{name}.npy", scores.astype(np.float32))


def write_choice(cache: Path) -> None:
    """Record MTT_musicnn and MSD_musicnn as the chosen teachers (what choose-teachers writes)."""
    document = {
        "choices": {"mtt": "mtt_musicnn", "msd": "msd_musicnn"},
        "described": {"mtt": "MTT_musicnn", "msd": "MSD_musicnn"},
        "figures": {},
    }
    (cache / "teachers.json").write_text(json.dumps(document))
