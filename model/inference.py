"""From a waveform of any length to per-window and track-level tag scores.

The service, the command-line tagger and the evaluation code all go through these functions, so
a track is cut into windows, scored and aggregated the same way everywhere.

Windowing for tagging: consecutive non-overlapping windows; when the track does not divide
evenly, the last window is aligned to the track's end (overlapping its neighbour) instead of
being zero-padded, so every window holds real audio. Only a track shorter than one window is
padded. Track scores are the mean of window probabilities, as in the MagnaTagATune protocol.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from model.base import TaggingModel


def window_starts(n_samples: int, window: int) -> list[int]:
    """Start offsets of the tagging windows of a track of `n_samples` (at least one window)."""
    if window <= 0:
        raise ValueError(f"window must be positive, got {window}")
    if n_samples <= window:
        return [0]
    count = -(-n_samples // window)  # ceil
    starts = [i * window for i in range(count - 1)]
    starts.append(n_samples - window)
    return starts


def _pad_to(waveform: Tensor, length: int) -> Tensor:
    if waveform.shape[-1] >= length:
        return waveform
    return torch.nn.functional.pad(waveform, (0, length - waveform.shape[-1]))


def split_windows(waveform: Tensor, window: int) -> Tensor:
    """Cut a mono waveform (T,) into tagging windows (N, window); see `window_starts`."""
    if waveform.dim() != 1:
        raise ValueError(f"expected a mono waveform (T,), got shape {tuple(waveform.shape)}")
    padded = _pad_to(waveform, window)
    starts = window_starts(waveform.shape[0], window)
    return torch.stack([padded[s : s + window] for s in starts])


class WindowCutter:
    """Cuts a waveform that arrives in chunks into exactly the windows `split_windows` cuts.

    Full windows leave as soon as their samples are in; `finish` adds the last one (aligned to
    the end, or the padded only window of a short track). Holds less than two windows of audio.

    Args:
        window: Samples per window.
    """

    def __init__(self, window: int) -> None:
        if window <= 0:
            raise ValueError(f"window must be positive, got {window}")
        self.window = window
        self.samples = 0  # pushed so far
        self._pending = np.zeros(0, dtype=np.float32)  # samples after the last full window
        self._last = np.zeros(0, dtype=np.float32)  # the last full window

    def push(self, chunk: np.ndarray) -> np.ndarray:
        """Add (n,) samples; returns the windows they complete, (k, window) float32, k >= 0."""
        self.samples += len(chunk)
        pending = np.concatenate([self._pending, chunk.astype(np.float32, copy=False)])
        count = len(pending) // self.window
        self._pending = pending[count * self.window :].copy()
        windows = pending[: count * self.window].reshape(count, self.window)
        if count:
            self._last = windows[-1].copy()
        return windows

    def finish(self) -> np.ndarray:
        """The windows still due at the end of the track, (0 or 1, window)."""
        rest = len(self._pending)
        if self.samples == 0:
            raise ValueError("no samples were pushed")
        if self.samples < self.window:  # a short track: its one window, zero-padded
            padded = np.zeros((1, self.window), dtype=np.float32)
            padded[0, :rest] = self._pending
            return padded
        if rest == 0:
            return np.zeros((0, self.window), dtype=np.float32)
        # Aligned to the track's end: the tail of the last full window, then the rest.
        return np.concatenate([self._last[rest:], self._pending])[np.newaxis, :]


def evaluation_crops(waveform: Tensor, window: int, n_crops: int = 16) -> Tensor:
    """Won et al.'s evaluation crops: `n_crops` evenly spaced windows, (n_crops, window).

    hop = (T - window) // n_crops and crop i starts at i · hop, exactly as the reference
    `eval.py`; a clip shorter than one window is zero-padded and repeated.
    """
    if waveform.dim() != 1:
        raise ValueError(f"expected a mono waveform (T,), got shape {tuple(waveform.shape)}")
    if n_crops <= 0:
        raise ValueError(f"n_crops must be positive, got {n_crops}")
    padded = _pad_to(waveform, window)
    hop = (padded.shape[0] - window) // n_crops
    return torch.stack([padded[i * hop : i * hop + window] for i in range(n_crops)])


def _batches(windows: Tensor, batch_size: int) -> Iterator[Tensor]:
    for start in range(0, windows.shape[0], batch_size):
        yield windows[start : start + batch_size]


@torch.inference_mode()
def predict_windows(
    model: TaggingModel,
    windows: Tensor,
    *,
    batch_size: int = 64,
    device: torch.device | str | None = None,
    autocast_dtype: torch.dtype | None = None,
) -> Tensor:
    """Tag probabilities for a stack of windows.

    Args:
        model: A network in eval mode (this function does not change its mode).
        windows: (N, window_samples) float waveforms.
        batch_size: Windows per forward pass.
        device: Where to run; defaults to the model's device.
        autocast_dtype: bf16/fp16 autocast, or None for full precision.

    Returns:
        (N, n_classes) float32 probabilities on the CPU.
    """
    if windows.dim() != 2:
        raise ValueError(f"expected windows (N, samples), got shape {tuple(windows.shape)}")
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    target = torch.device(device) if device is not None else next(model.parameters()).device
    outputs = []
    for batch in _batches(windows, batch_size):
        batch = batch.to(target, dtype=torch.float32, non_blocking=True)
        with torch.autocast(
            device_type=target.type, dtype=autocast_dtype, enabled=autocast_dtype is not None
        ):
            logits = model(batch)
        outputs.append(torch.sigmoid(logits.float()).cpu())
    if not outputs:
        return torch.empty(0, model.n_classes)
    return torch.cat(outputs)


@dataclass(frozen=True)
class TrackPrediction:
    """Scores of one track.

    Attributes:
        window_scores: (N, n_classes) probabilities per window.
        track_scores: (n_classes,) mean of the window probabilities.
        window_starts: Start of each window in samples.
        window_samples: Window length in samples.
        sample_rate: Hz of the analysed waveform.
    """

    window_scores: Tensor
    track_scores: Tensor
    window_starts: list[int]
    window_samples: int
    sample_rate: int

    def window_times(self, n_samples: int) -> list[tuple[float, float]]:
        """(start, end) seconds of each window, clipped to the track's length."""
        rate = self.sample_rate
        return [
            (start / rate, min(start + self.window_samples, max(n_samples, 1)) / rate)
            for start in self.window_starts
        ]


def aggregate(window_scores: Tensor) -> Tensor:
    """Track-level scores from window scores: their mean, (N, C) -> (C,)."""
    if window_scores.dim() != 2 or window_scores.shape[0] == 0:
        raise ValueError("need at least one window of scores")
    return window_scores.mean(dim=0)


def predict_track(
    model: TaggingModel,
    waveform: Tensor,
    *,
    batch_size: int = 64,
    device: torch.device | str | None = None,
    autocast_dtype: torch.dtype | None = None,
) -> TrackPrediction:
    """Window and track scores for a mono waveform (T,) at the model's sample rate."""
    window = model.audio.window_samples
    windows = split_windows(waveform, window)
    scores = predict_windows(
        model, windows, batch_size=batch_size, device=device, autocast_dtype=autocast_dtype
    )
    return TrackPrediction(
        window_scores=scores,
        track_scores=aggregate(scores),
        window_starts=window_starts(waveform.shape[0], window),
        window_samples=window,
        sample_rate=model.audio.sample_rate,
    )
