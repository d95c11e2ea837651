"""The interface every tagging network in the zoo implements."""

from __future__ import annotations

from typing import ClassVar

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

    @property
    def audio(self) -> AudioConfig:
        return self.config.audio

    @property
    def n_classes(self) -> int:
        return self.config.n_classes

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, waveform: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError
