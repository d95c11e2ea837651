"""Asymmetric loss (upstream Query2Label's) against BCE and against its definition."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from training.losses import asymmetric_loss, training_loss


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(8, 5, generator=generator, dtype=torch.float64) * 3
    targets = (torch.rand(8, 5, generator=generator) < 0.3).double()
    return logits, targets


def test_without_focusing_it_is_bce() -> None:
    logits, targets = _batch()
    asl = asymmetric_loss(logits, targets, gamma_neg=0.0, gamma_pos=0.0, clip=0.0)
    assert asl.item() == pytest.approx(F.binary_cross_entropy_with_logits(logits, targets).item())


def test_matches_the_reference_formula() -> None:
    logits, targets = _batch()
    p = torch.sigmoid(logits)
    p_neg = (1 - p + 0.05).clamp(max=1)
    expected = -(
        targets * torch.log(p) * (1 - p) ** 1 + (1 - targets) * torch.log(p_neg) * (1 - p_neg) ** 4
    ).mean()
    got = asymmetric_loss(logits, targets, gamma_neg=4.0, gamma_pos=1.0, clip=0.05)
    assert got.item() == pytest.approx(expected.item())


def test_easy_negatives_count_less_than_under_bce() -> None:
    targets = torch.zeros(1, 2)
    logits = torch.tensor([[-4.0, 2.0]])  # an easy and a hard negative
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    asl = torch.stack([asymmetric_loss(logits[:, [k]], targets[:, [k]]) for k in range(2)])
    assert (asl / bce[0]).tolist()[0] < 0.01 < (asl / bce[0]).tolist()[1]


def test_training_loss_names() -> None:
    logits, targets = _batch()
    assert training_loss(
        "bce", logits, targets, gamma_neg=2, gamma_pos=0, clip=0
    ).item() == pytest.approx(F.binary_cross_entropy_with_logits(logits, targets).item())
    with pytest.raises(ValueError, match="unknown loss"):
        training_loss("focal", logits, targets, gamma_neg=2, gamma_pos=0, clip=0)
    with pytest.raises(ValueError, match="non-negative"):
        asymmetric_loss(logits, targets, clip=-0.1)
