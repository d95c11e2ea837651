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


def resolve_threads(setting: int) -> int:
    """Service intra-op threads: the setting, or one less than the cores (decoding needs one)."""
    return setting or max(1, (os.cpu_count() or 1) - 1)


def default_decode_workers() -> int:
    """`tagger tag` decode threads: one, or two with more than 4 cores."""
    return 1 if (os.cpu_count() or 1) <= 4 else 2


def default_cli_threads(decode_workers: int) -> int:
    """`tagger tag` torch threads: the cores the decode threads leave."""
    return max(1, (os.cpu_count() or 1) - decode_workers)
