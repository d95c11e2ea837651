"""The mel front end: frame counts, float32 under autocast, bad input."""

from __future__ import annotations

import pytest
import torch

from model.config import AudioConfig, MelConfig
from model.frontend import MelFrontEnd


def test_frames_and_shape_for_one_window() -> None:
    frontend = MelFrontEnd(AudioConfig(), MelConfig()).eval()
    out = frontend(torch.randn(2, 59049))
    assert out.shape == (2, 1, 128, 231)
    assert MelConfig().n_frames(59049) == 231


def test_log_mel_stays_float32_under_bf16_autocast() -> None:
    frontend = MelFrontEnd(AudioConfig(), MelConfig()).eval()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = frontend.log_mel(torch.randn(1, 16000))
    assert out.dtype == torch.float32


def test_db_and_log10_compression() -> None:
    tone = torch.sin(torch.arange(16000) / 16000 * 2 * torch.pi * 440).unsqueeze(0)
    db = MelFrontEnd(AudioConfig(), MelConfig()).log_mel(tone)
    log10 = MelFrontEnd(AudioConfig(), MelConfig(compression="log10")).log_mel(tone)
    assert db.min() < -20  # dB of near-silent bins is strongly negative
    assert log10.min() >= 0  # log10(10000·x + 1) is never negative


def test_refuses_unbatched_waveform() -> None:
    frontend = MelFrontEnd(AudioConfig(), MelConfig())
    with pytest.raises(ValueError, match=r"\(batch, samples\)"):
        frontend(torch.randn(16000))
