"""Evidence maps (model/explain.py) on untrained zoo models: shapes, bounds, axes, and that the
serving model is left exactly as it was."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from model.base import TaggingModel
from model.config import MelConfig
from model.explain import (
    Explainer,
    ExplainUnsupportedError,
    attention_probabilities,
    band_edges_hz,
    pool_time,
    stitch,
    supported_methods,
)
from model.zoo import build_model

WINDOW = 59049


@pytest.fixture(scope="module")
def q2l() -> TaggingModel:
    torch.manual_seed(0)
    return build_model("q2l-small").eval()


def test_recomputed_attention_equals_the_layers_own_weights() -> None:
    torch.manual_seed(1)
    attention = nn.MultiheadAttention(32, 4, batch_first=True).eval()
    query, key = torch.randn(2, 5, 32), torch.randn(2, 7, 32)
    _, expected = attention(query, key, key, need_weights=True, average_attn_weights=False)
    probs = attention_probabilities(attention, query, key)
    assert probs.shape == (2, 4, 5, 7)
    torch.testing.assert_close(probs, expected)


def test_methods_per_architecture() -> None:
    assert supported_methods(build_model("q2l-small")) == ("attention", "gradient")
    assert supported_methods(build_model("rescnn")) == ("gradient",)
    assert supported_methods(build_model("musicnn")) == ("gradient",)
    assert supported_methods(build_model("hcnn")) == ()
    with pytest.raises(ExplainUnsupportedError, match="cannot give a attention map"):
        Explainer(build_model("rescnn")).check(["attention"])


def test_maps_have_the_token_grid_and_scores_match_the_model(q2l: TaggingModel) -> None:
    windows = torch.randn(2, WINDOW) * 0.1
    with torch.inference_mode():
        expected = torch.sigmoid(q2l(windows))
    evidence = Explainer(q2l).explain(windows, [0, 9], ["attention", "gradient"])
    torch.testing.assert_close(evidence.scores, expected, atol=1e-5, rtol=0)
    assert evidence.maps["attention"].shape == (2, 2, 4, 8)  # 4 frequency × 8 time tokens
    assert evidence.maps["gradient"].shape == (2, 2, 16, 8)
    for maps in evidence.maps.values():
        assert (maps >= 0).all()
        # Each window's map sums to that window's probability of the tag.
        torch.testing.assert_close(maps.sum(dim=(2, 3)), expected[:, [0, 9]], atol=1e-4, rtol=0)


def test_the_serving_model_keeps_no_hook_and_its_output(q2l: TaggingModel) -> None:
    windows = torch.randn(2, WINDOW) * 0.1
    with torch.inference_mode():
        before = q2l(windows)
    Explainer(q2l).explain(windows, [3], ["attention", "gradient"])
    with torch.inference_mode():
        after = q2l(windows)
    assert torch.equal(before, after)
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in q2l.modules())


def test_gradient_maps_for_models_without_queries() -> None:
    for preset, window in (("rescnn", WINDOW), ("musicnn", 48000)):
        model = build_model(preset).eval()
        evidence = Explainer(model).explain(torch.randn(2, window) * 0.1, [1], ["gradient"])
        assert evidence.maps["gradient"].shape == (2, 1, 16, 8)


def test_band_edges_are_hz_of_the_mel_axis() -> None:
    edges = band_edges_hz(MelConfig(), 4)
    # HTK mel, 0-8 kHz, 128 filters in 4 groups of 32: the first inner edge lies half a filter
    # step above the 32nd filter centre, 715.5 mel = 620.8 Hz.
    assert edges[0] == 0.0
    assert edges[-1] == 8000.0
    assert edges[1] == pytest.approx(620.8, abs=0.2)
    assert edges == sorted(edges)
    assert len(edges) == 5
    assert len(band_edges_hz(MelConfig(), 16)) == 17


def test_stitch_averages_the_overlapping_last_window() -> None:
    # 2 windows of 8 steps over a track of 1.5 windows: the second starts half a window in.
    maps = torch.stack([torch.zeros(1, 1, 8), torch.ones(1, 1, 8)])
    track = stitch(maps, [0, WINDOW // 2], WINDOW, WINDOW + WINDOW // 2)
    assert track.shape == (1, 1, 12)
    assert track[0, 0].tolist() == [0, 0, 0, 0, 0.5, 0.5, 0.5, 0.5, 1, 1, 1, 1]


def test_pool_time_bounds_the_columns() -> None:
    track = torch.arange(10.0).reshape(1, 1, 10)
    pooled, factor = pool_time(track, 4)
    assert factor == 3
    assert pooled.shape == (1, 1, 4)
    assert pooled[0, 0].tolist() == [1.0, 4.0, 7.0, 9.0]  # the last group holds one column
    same, one = pool_time(track, 10)
    assert one == 1
    assert torch.equal(same, track)
