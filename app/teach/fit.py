"""Training one tag's two scorers on cached windows, and the metrics that judge them.

Both scorers see the same windows (`Windows`: per window the frozen base model's memory tokens
and its unit pooled embedding) and are judged the same way: a track's score is the mean of its
windows' probabilities, as in serving (`model.inference.aggregate`).

- `fit_query`: a new label query and classifier row through the frozen decoder. The decoder's
  keys and values depend on the memory only, so they are computed once per fit (`DecoderKV`);
  a training step then costs one query's attention and feed-forward per window. The query
  starts at the base query whose own tag best separates the examples (measured better than the
  mean of the base queries, docs/custom-tags.md), the row by imprinting (mean decoder output of the
  positives minus that of the negatives), then both are trained with Adam on class-balanced
  binary cross-entropy.
- `fit_probe`: logistic regression on the unit pooled embedding, class-balanced, L2-penalised,
  fitted with L-BFGS (scikit-learn is not a runtime dependency; this is 20 lines of torch).

Metrics (`roc_auc`, `average_precision`) are numpy versions of scikit-learn's definitions
(ties averaged; AP as the step-wise sum over distinct thresholds), checked against it in
tests/app/teach/test_fit.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, cast

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch import Tensor

from model.q2l import Query2Label, _DecoderLayer

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class FitConfig:
    """How the scorers are trained; the defaults are the ones docs/custom-tags.md measures.

    Attributes:
        query_start: Where the new query starts: the mean of the base queries, or the base
            query whose own tag separates the examples best (ROC-AUC on the training windows,
            either sign).
        query_steps: Full-batch Adam steps for the query and its row.
        query_lr: Adam learning rate.
        query_anchor: L2 pull of the query towards its starting point (few examples overfit).
        row_decay: L2 penalty on the classifier row.
        probe_l2: L2 penalty of the probe, on the mean loss (scikit-learn's C=1 at ~5,000
            windows).
        windows_per_track: Windows of a track a fit trains on (evenly spaced among the cached).
    """

    query_start: Literal["mean", "nearest"] = "nearest"
    query_steps: int = 150
    query_lr: float = 1e-2
    query_anchor: float = 1e-2
    row_decay: float = 1e-3
    probe_l2: float = 1e-4
    windows_per_track: int = 8


@dataclass(frozen=True)
class Windows:
    """The cached windows of a set of tracks, concatenated.

    Attributes:
        memory: (N, T, d_model) the encoder's output per window.
        pos: (1, T, d_model) the tokens' position encoding (the same for every window).
        embedding: (N, D) the L2-normalised pooled embedding per window.
        track: (N,) index of the window's track (into the caller's track list).
    """

    memory: Tensor
    pos: Tensor
    embedding: Tensor
    track: Tensor

    def subset(self, tracks: npt.NDArray[np.int64], per_track: int | None = None) -> Windows:
        """The windows of `tracks` (at most `per_track` evenly spaced of each)."""
        chosen: list[Tensor] = []
        for track in tracks.tolist():
            rows = torch.nonzero(self.track == track).flatten()
            if per_track is not None and len(rows) > per_track:
                rows = rows[torch.linspace(0, len(rows) - 1, per_track).round().long()]
            chosen.append(rows)
        index = torch.cat(chosen) if chosen else torch.zeros(0, dtype=torch.long)
        return Windows(self.memory[index], self.pos, self.embedding[index], self.track[index])


@dataclass(frozen=True)
class QueryHead:
    query: Tensor  # (d_model,)
    row: Tensor  # (d_model,)
    bias: Tensor  # ()


@dataclass(frozen=True)
class ProbeHead:
    weight: Tensor  # (D,)
    bias: Tensor  # ()


class DecoderKV:
    """The frozen decoder of `model` with its keys and values precomputed for `windows`."""

    def __init__(self, model: Query2Label, memory: Tensor, pos: Tensor) -> None:
        self.model = model
        d = model.config.d_model
        self.heads = model.config.n_heads
        self.layers = [cast(_DecoderLayer, layer) for layer in model.decoder]
        self.keys: list[Tensor] = []
        self.values: list[Tensor] = []
        with torch.no_grad():
            for layer in self.layers:
                attention = layer.cross_attn
                w, b = attention.in_proj_weight, attention.in_proj_bias
                assert b is not None
                keys = F.linear(memory + pos, w[d : 2 * d], b[d : 2 * d])
                values = F.linear(memory, w[2 * d :], b[2 * d :])
                self.keys.append(self._split(keys))
                self.values.append(self._split(values))

    def _split(self, x: Tensor) -> Tensor:  # (N, T, d) -> (N, heads, T, d / heads)
        n, t, d = x.shape
        return x.view(n, t, self.heads, d // self.heads).transpose(1, 2)

    def hidden(self, query: Tensor) -> Tensor:
        """The decoder's normalised output for one query (d,) at every window: (N, d)."""
        model = self.model
        d = model.config.d_model
        n = self.keys[0].shape[0]
        target = query.new_zeros(n, d)
        for layer, keys, values in zip(self.layers, self.keys, self.values, strict=True):
            attention = layer.cross_attn
            w, b = attention.in_proj_weight, attention.in_proj_bias
            assert b is not None
            q = F.linear(target + query, w[:d], b[:d])  # (N, d)
            q = q.view(n, self.heads, 1, d // self.heads)
            attended = F.scaled_dot_product_attention(q, keys, values)  # (N, heads, 1, d/h)
            attended = attention.out_proj(attended.reshape(n, d))
            target = layer.norm2(target + attended)
            target = layer.norm3(target + layer.ffn(target))
        hidden: Tensor = model.decoder_norm(target)
        return hidden


def _balanced_weights(labels: Tensor) -> Tensor:
    positives = float(labels.sum())
    negatives = float(len(labels) - positives)
    return torch.where(labels > 0.5, len(labels) / (2 * positives), len(labels) / (2 * negatives))


def fit_query(
    model: Query2Label, windows: Windows, labels: Tensor, config: FitConfig, seed: int = 0
) -> QueryHead:
    """Train a new query and row on `windows` with per-window labels (N,) in {0, 1}."""
    torch.manual_seed(seed)
    kv = DecoderKV(model, windows.memory, windows.pos)
    start = _starting_query(model, kv, labels, config)
    with torch.no_grad():
        hidden = kv.hidden(start)
        positive, negative = hidden[labels > 0.5].mean(0), hidden[labels <= 0.5].mean(0)
        direction = positive - negative
        spread = (hidden @ direction).std().clamp_min(1e-6)
        row0 = direction * (2.0 / spread)  # logits with a spread of about 2 to start from
        bias0 = -(row0 @ (positive + negative) / 2)
    query = start.clone().requires_grad_(True)
    row = row0.clone().requires_grad_(True)
    bias = bias0.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([query, row, bias], lr=config.query_lr)
    weights = _balanced_weights(labels)
    for _ in range(config.query_steps):
        optimizer.zero_grad()
        logits = kv.hidden(query) @ row + bias
        loss = F.binary_cross_entropy_with_logits(logits, labels, weight=weights)
        loss = loss + config.query_anchor * (query - start).pow(2).sum()
        loss = loss + config.row_decay * row.pow(2).sum()
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
    return QueryHead(query.detach(), row.detach(), bias.detach())


def _starting_query(model: Query2Label, kv: DecoderKV, labels: Tensor, config: FitConfig) -> Tensor:
    queries = model.query_embed.weight.detach()
    if config.query_start == "mean":
        return queries.mean(dim=0)
    best, best_separation = 0, -1.0
    with torch.no_grad():
        for k in range(len(queries)):
            logits = kv.hidden(queries[k]) @ model.classifier.weight[0, k]
            auc = roc_auc(labels.numpy(), logits.numpy())
            if max(auc, 1 - auc) > best_separation:
                best, best_separation = k, max(auc, 1 - auc)
    return queries[best].clone()


def query_logits(model: Query2Label, windows: Windows, head: QueryHead) -> Tensor:
    with torch.no_grad():
        return (
            DecoderKV(model, windows.memory, windows.pos).hidden(head.query) @ head.row + head.bias
        )


def fit_probe(windows: Windows, labels: Tensor, config: FitConfig) -> ProbeHead:
    """Class-balanced, L2-penalised logistic regression on the unit embeddings."""
    x = windows.embedding.float()
    weights = _balanced_weights(labels)
    weight = torch.zeros(x.shape[1], requires_grad=True)
    bias = torch.zeros((), requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [weight, bias], lr=1.0, max_iter=200, line_search_fn="strong_wolfe"
    )

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = F.binary_cross_entropy_with_logits(x @ weight + bias, labels, weight=weights)
        loss = loss + config.probe_l2 / 2 * weight.pow(2).sum()
        loss.backward()  # type: ignore[no-untyped-call]
        return loss

    optimizer.step(closure)  # type: ignore[no-untyped-call]
    return ProbeHead(weight.detach(), bias.detach())


def probe_logits(windows: Windows, head: ProbeHead) -> Tensor:
    return windows.embedding.float() @ head.weight + head.bias


def track_scores(window_logits: Tensor, window_track: Tensor, tracks: Tensor) -> FloatArray:
    """Each track's score: the mean of its windows' probabilities, in `tracks` order."""
    probabilities = torch.sigmoid(window_logits.float())
    return np.array([float(probabilities[window_track == t].mean()) for t in tracks.tolist()])


def roc_auc(labels: npt.ArrayLike, scores: npt.ArrayLike) -> float:
    """Area under the ROC curve (Mann-Whitney, ties count half); NaN with one class only."""
    y = np.asarray(labels, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    positives, negatives = int(y.sum()), int((~y).sum())
    if positives == 0 or negatives == 0:
        return math.nan
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s))
    sorted_scores = s[order]
    i = 0
    while i < len(s):  # average ranks over ties
        j = i
        while j + 1 < len(s) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[y].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def average_precision(labels: npt.ArrayLike, scores: npt.ArrayLike) -> float:
    """Area under the precision-recall curve as scikit-learn's `average_precision_score`."""
    y = np.asarray(labels, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    if not y.any():
        return math.nan
    order = np.argsort(-s, kind="mergesort")
    y, s = y[order], s[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    true_positives = np.cumsum(y)[last_of_tie]
    predicted = last_of_tie + 1
    precision = true_positives / predicted
    recall = true_positives / y.sum()
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def best_f1_threshold(labels: npt.ArrayLike, scores: npt.ArrayLike) -> tuple[float, float]:
    """The decision threshold with the best F1 on these (out-of-fold) scores, and that F1.

    The threshold is the midpoint between the lowest score kept and the next one below, so a
    new track scoring like the kept ones passes."""
    y = np.asarray(labels, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-s, kind="mergesort")
    y, s = y[order], s[order]
    true_positives = np.cumsum(y)
    best, best_index = -1.0, 0
    for i in range(len(s)):
        if i + 1 < len(s) and s[i + 1] == s[i]:
            continue  # a threshold cannot split tied scores
        f1 = 2 * true_positives[i] / (i + 1 + y.sum())
        if f1 > best:
            best, best_index = f1, i
    below = s[best_index + 1] if best_index + 1 < len(s) else 0.0
    return float((s[best_index] + below) / 2), float(best)
