"""Query2Label internals: token grid, position encoding, decoder structure, GroupWiseLinear."""

from __future__ import annotations

import math

import pytest
import torch

from model.q2l import GroupWiseLinear, Query2Label, sine_position_encoding
from model.zoo import build_model


def _detr_reference(height: int, width: int, dim: int) -> torch.Tensor:
    """DETR's PositionEmbeddingSine(normalize=True) written as in the upstream code."""
    not_mask = torch.ones(1, height, width)
    y_embed = not_mask.cumsum(1, dtype=torch.float32)
    x_embed = not_mask.cumsum(2, dtype=torch.float32)
    eps, scale = 1e-6, 2 * math.pi
    y_embed = y_embed / (y_embed[:, -1:, :] + eps) * scale
    x_embed = x_embed / (x_embed[:, :, -1:] + eps) * scale
    feats = dim // 2
    dim_t = torch.arange(feats, dtype=torch.float32)
    dim_t = 10000 ** (2 * (dim_t // 2) / feats)
    pos_x = x_embed[:, :, :, None] / dim_t
    pos_y = y_embed[:, :, :, None] / dim_t
    pos_x = torch.stack((pos_x[:, :, :, 0::2].sin(), pos_x[:, :, :, 1::2].cos()), dim=4).flatten(3)
    pos_y = torch.stack((pos_y[:, :, :, 0::2].sin(), pos_y[:, :, :, 1::2].cos()), dim=4).flatten(3)
    pos = torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2)  # (1, dim, H, W)
    return pos.flatten(2).permute(0, 2, 1)[0]  # row-major tokens, (H·W, dim)


@pytest.mark.parametrize(("height", "width"), [(4, 8), (4, 2), (3, 5), (1, 1), (4, 59)])
def test_position_encoding_matches_detr_for_any_grid(height: int, width: int) -> None:
    ours = sine_position_encoding(height, width, 64)
    assert ours.shape == (height * width, 64)
    torch.testing.assert_close(ours, _detr_reference(height, width, 64))


def test_position_encoding_needs_dim_divisible_by_four() -> None:
    with pytest.raises(ValueError, match="divisible by 4"):
        sine_position_encoding(4, 8, 30)


@pytest.mark.parametrize(
    ("seconds", "grid"), [(59049 / 16000, (4, 8)), (1.0, (4, 2)), (30.0, (4, 59))]
)
def test_token_grid_follows_the_input_length(seconds: float, grid: tuple[int, int]) -> None:
    model = build_model("q2l-small").eval()
    assert isinstance(model, Query2Label)
    tokens, pos = model.tokens(torch.randn(1, round(seconds * 16000)))
    assert tokens.shape == (1, grid[0] * grid[1], 256)
    assert pos.shape == (1, grid[0] * grid[1], 256)
    assert model(torch.randn(1, round(seconds * 16000))).shape == (1, 50)


def test_decoder_layers_have_no_self_attention() -> None:
    model = build_model("q2l-base")
    assert isinstance(model, Query2Label)
    assert len(model.decoder) == 2
    assert len(model.encoder) == 1
    for layer in model.decoder:
        assert layer.self_attn is None
        assert not any("self_attn" in name for name, _ in layer.named_parameters())


def test_group_wise_linear_is_a_per_label_dot_product() -> None:
    head = GroupWiseLinear(n_classes=5, dim=8)
    hidden = torch.randn(3, 5, 8)
    expected = torch.einsum("bkd,kd->bk", hidden, head.weight[0]) + head.bias
    torch.testing.assert_close(head(hidden), expected)


def test_label_queries_change_only_their_own_label_without_self_attention() -> None:
    model = build_model("q2l-small").eval()
    assert isinstance(model, Query2Label)
    waveform = torch.randn(1, model.audio.window_samples)
    before = model(waveform)
    with torch.no_grad():
        model.query_embed.weight[3] += 1.0
    after = model(waveform)
    changed = (before - after).abs()[0] > 1e-6
    assert changed.tolist() == [i == 3 for i in range(50)]
