"""Embeddings: an L2-normalised vector per window and per track, from the tagging pass itself.

Every network returns an embedding beside its logits (`TaggingModel.forward_with_embedding`):
Query2Label pools a hidden layer chosen by measured retrieval quality (docs/similarity.md), the
musicnn teacher returns its penultimate layer (what musicnn's own extractor gives), the other
baselines the tag-score vector. Pooling costs next to nothing against the network, so a runtime
built with `RuntimeOptions(embeddings=True)` always computes it and returns one row per window:

    row = [ n_tags probabilities | embedding_dim L2-normalised embedding ]

The batchers pass rows through whatever their width; `split_rows` cuts them again, once, for
both front ends. A track's embedding is the normalised mean of its windows' embeddings
(`track_embedding`), as its scores are the mean of its windows' scores.

An embedding is only comparable with embeddings of the same model: its identity
(`EmbeddingSpec`) is the model id (preset and checkpoint digest), the kind and the dimension,
and a catalogue records it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from model.base import TaggingModel


@dataclass(frozen=True)
class EmbeddingSpec:
    """What an embedding is: which model made it, what it pools, how long it is."""

    model_id: str
    kind: str
    dim: int

    def to_dict(self) -> dict[str, str | int]:
        return {"model_id": self.model_id, "kind": self.kind, "dim": self.dim}


def embedding_spec(model: TaggingModel, model_id: str) -> EmbeddingSpec:
    """The identity of `model`'s embeddings (`model_id` as `Checkpoint.model_id` gives it)."""
    return EmbeddingSpec(model_id=model_id, kind=model.embedding_kind, dim=model.embedding_dim)


def scores_and_embedding_rows(logits: Tensor, embedding: Tensor) -> Tensor:
    """One row per window: sigmoid probabilities, then the L2-normalised embedding (fp32)."""
    probabilities = torch.sigmoid(logits.float())
    return torch.cat((probabilities, F.normalize(embedding.float(), dim=1)), dim=1)


def split_rows(rows: Tensor, n_tags: int) -> tuple[Tensor, Tensor | None]:
    """(N, n_tags [+ D]) rows -> (N, n_tags) scores and (N, D) embeddings, or None if no D."""
    if rows.dim() != 2 or rows.shape[1] < n_tags:
        raise ValueError(f"expected rows (N, >= {n_tags}), got {tuple(rows.shape)}")
    if rows.shape[1] == n_tags:
        return rows, None
    return rows[:, :n_tags], rows[:, n_tags:]


def track_embedding(window_embeddings: Tensor) -> Tensor:
    """A track's embedding: the L2-normalised mean of its window embeddings, (N, D) -> (D,)."""
    if window_embeddings.dim() != 2 or window_embeddings.shape[0] == 0:
        raise ValueError("need at least one window's embedding")
    return F.normalize(window_embeddings.float().mean(dim=0), dim=0)
