"""Windowing, evaluation crops and track inference for every preset."""

from __future__ import annotations

import pytest
import torch

from model.inference import (
    aggregate,
    evaluation_crops,
    predict_track,
    predict_windows,
    split_windows,
    window_starts,
)
from model.zoo import PRESETS, build_model


@pytest.mark.parametrize(
    ("n_samples", "window", "expected"),
    [
        (10, 100, [0]),
        (100, 100, [0]),
        (250, 100, [0, 100, 150]),
        (300, 100, [0, 100, 200]),
        (301, 100, [0, 100, 200, 201]),
    ],
)
def test_window_starts_cover_the_track_with_real_audio(
    n_samples: int, window: int, expected: list[int]
) -> None:
    assert window_starts(n_samples, window) == expected


def test_three_minutes_make_49_windows() -> None:
    assert len(window_starts(180 * 16000, 59049)) == 49


def test_short_audio_is_zero_padded_to_one_window() -> None:
    windows = split_windows(torch.ones(10), 16)
    assert windows.shape == (1, 16)
    assert windows[0, :10].eq(1).all()
    assert windows[0, 10:].eq(0).all()


def test_last_window_is_aligned_to_the_end() -> None:
    waveform = torch.arange(250, dtype=torch.float32)
    windows = split_windows(waveform, 100)
    assert windows.shape == (3, 100)
    assert windows[-1, -1].item() == 249
    assert windows[-1, 0].item() == 150


def test_evaluation_crops_follow_won_et_al() -> None:
    waveform = torch.arange(1000, dtype=torch.float32)
    crops = evaluation_crops(waveform, window=200, n_crops=16)
    hop = (1000 - 200) // 16
    assert crops.shape == (16, 200)
    assert [int(c[0]) for c in crops] == [i * hop for i in range(16)]


def test_evaluation_crops_of_a_short_clip_are_padded() -> None:
    crops = evaluation_crops(torch.ones(50), window=200, n_crops=4)
    assert crops.shape == (4, 200)
    assert crops[:, 50:].eq(0).all()


@pytest.mark.parametrize("bad", [torch.zeros(2, 10), torch.zeros(())])
def test_windowing_refuses_non_mono_input(bad: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="mono"):
        split_windows(bad, 4)


@pytest.mark.parametrize("preset", list(PRESETS))
@pytest.mark.parametrize("seconds", [1.0, 59049 / 16000, 30.0])
def test_track_inference_for_every_preset(preset: str, seconds: float) -> None:
    model = build_model(preset).eval()
    n_samples = round(seconds * 16000)
    result = predict_track(model, torch.randn(n_samples) * 0.1, batch_size=4)
    n_windows = len(window_starts(n_samples, model.audio.window_samples))
    assert result.window_scores.shape == (n_windows, 50)
    assert result.track_scores.shape == (50,)
    assert ((result.window_scores >= 0) & (result.window_scores <= 1)).all()
    torch.testing.assert_close(result.track_scores, result.window_scores.mean(0))
    times = result.window_times(n_samples)
    assert times[0][0] == 0.0
    assert times[-1][1] == pytest.approx(max(seconds, 0), abs=1e-4)


def test_batch_size_does_not_change_scores() -> None:
    model = build_model("q2l-small").eval()
    windows = torch.randn(5, model.audio.window_samples) * 0.1
    one = predict_windows(model, windows, batch_size=1)
    all_at_once = predict_windows(model, windows, batch_size=5)
    torch.testing.assert_close(one, all_at_once, atol=1e-5, rtol=1e-4)


def test_bf16_autocast_keeps_float32_probabilities() -> None:
    model = build_model("q2l-small").eval()
    scores = predict_windows(
        model, torch.randn(2, model.audio.window_samples), autocast_dtype=torch.bfloat16
    )
    assert scores.dtype == torch.float32
    assert scores.shape == (2, 50)


def test_aggregate_refuses_no_windows() -> None:
    with pytest.raises(ValueError, match="at least one window"):
        aggregate(torch.empty(0, 50))
