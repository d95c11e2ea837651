"""Defaults both front ends share: the model call's type, thread counts, the bundled checkpoint."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from torch import Tensor

import model

InferFn = Callable[[Tensor], Tensor]
"""A model call: (N, window_samples) float32 windows on the host -> (N, n_tags) float32
probabilities on the CPU, or (N, n_tags + D) rows with each window's embedding after its
scores (`model.embedding.split_rows` cuts them). Both front ends pass a `model.runtime.Runtime`
built with `embeddings=True`."""


def default_checkpoint_path() -> Path:
    """`model/weights/default.safetensors` inside the installed `model` package."""
    return Path(model.__file__).resolve().parent / "weights" / "default.safetensors"


def available_cores() -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup v2 CPU quota.

    `os.cpu_count()` counts the host's CPUs, so in a container limited to 2 CPUs of 64 every
    default below would have started 63 threads.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores or 1, max(1, int(int(quota) / int(period))))
    except (OSError, ValueError):
        pass  # no cgroup v2 quota: the affinity mask is the limit
    return max(1, cores or 1)


def resolve_threads(setting: int) -> int:
    """Service intra-op threads: the setting, or one less than the cores (decoding needs one)."""
    return setting or max(1, available_cores() - 1)


def default_decode_workers() -> int:
    """Files decoded at once, by `tagger tag`'s threads and the service's worker processes: one,
    or two with more than 4 cores. On 2 cores a second decoder only takes the model's core
    (docs/performance.md, "Decoding": 16 clients, one decoder against two)."""
    return 1 if available_cores() <= 4 else 2


def default_cli_threads(decode_workers: int) -> int:
    """`tagger tag` torch threads: the cores the decode threads leave."""
    return max(1, available_cores() - decode_workers)
