"""The interface every tagging network in the zoo implements."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from model.config import AudioConfig, ModelConfig


class TaggingModel(nn.Module):
    """A network that maps waveform windows to one logit per tag.

    Subclasses set `architecture` (the name stored in checkpoints) and `config`. Models return
    logits; the sigmoid is applied by the caller (inference, metrics), which keeps training
    numerically safe under autocast.

    Shapes:
        waveform (B, T) at `audio.sample_rate` -> logits (B, n_classes)
    """

    architecture: ClassVar[str]
    config: ModelConfig
    embedding_kind: ClassVar[str] = "tag-scores"
    """What `forward_with_embedding` pools, part of the embedding's identity (model.embedding).
    The default, for networks without a better one measured, is the tag-score vector."""

    @property
    def audio(self) -> AudioConfig:
        return self.config.audio

    @property
    def n_classes(self) -> int:
        return self.config.n_classes

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    @property
    def embedding_dim(self) -> int:
        return self.n_classes

    def forward(self, waveform: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward_with_embedding(self, waveform: Tensor) -> tuple[Tensor, Tensor]:
        """Logits and an un-normalised embedding from one pass: (B, n_classes), (B, D).

        Networks override it to pool a hidden layer; the default is the sigmoid scores.
        """
        logits = self(waveform)
        return logits, torch.sigmoid(logits.float())
