"""Training losses on logits: the paper's BCE and upstream Query2Label's asymmetric loss.

Asymmetric loss (Ridnik et al., ICCV 2021; `AsymmetricLossOptimized` in Alibaba-MIIL/ASL, which
upstream Query2Label trains with) down-weights easy negatives by (p)^gamma_neg and can shift
negative probabilities down by `clip`, so the many easy absent tags of a multi-label problem
stop dominating the gradient. Upstream sums over the batch and scales by 1000/num_classes; here
it is averaged over elements like BCE, so the paper's learning rate and (coupled) weight decay
mean the same thing for both losses. With gamma_neg = gamma_pos = clip = 0 it is exactly BCE.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def asymmetric_loss(
    logits: Tensor,
    targets: Tensor,
    *,
    gamma_neg: float = 2.0,
    gamma_pos: float = 0.0,
    clip: float = 0.0,
    eps: float = 1e-8,
) -> Tensor:
    """Mean asymmetric loss of `logits` (N, C) against 0/1 (or soft) `targets` (N, C).

    Defaults are upstream Query2Label's command-line defaults (gamma_neg 2, gamma_pos 0, no clip).
    """
    if clip < 0 or gamma_neg < 0 or gamma_pos < 0:
        raise ValueError("gamma_neg, gamma_pos and clip must be non-negative")
    p = torch.sigmoid(logits)
    log_pos = F.logsigmoid(logits)
    if clip > 0:
        p_neg = (1 - p + clip).clamp(max=1.0)
        log_neg = p_neg.clamp(min=eps).log()
    else:
        p_neg = 1 - p
        log_neg = F.logsigmoid(-logits)
    loss = targets * log_pos * (1 - p).pow(gamma_pos)
    loss = loss + (1 - targets) * log_neg * (1 - p_neg).pow(gamma_neg)
    return -loss.mean()


def training_loss(
    name: str, logits: Tensor, targets: Tensor, *, gamma_neg: float, gamma_pos: float, clip: float
) -> Tensor:
    """The loss a run trains with: "bce" (the paper) or "asl" (upstream Query2Label)."""
    if name == "bce":
        return F.binary_cross_entropy_with_logits(logits, targets)
    if name == "asl":
        return asymmetric_loss(logits, targets, gamma_neg=gamma_neg, gamma_pos=gamma_pos, clip=clip)
    raise ValueError(f"unknown loss {name!r}; use 'bce' or 'asl'")
