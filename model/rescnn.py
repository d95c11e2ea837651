"""Short-chunk ResCNN (Won et al., "Evaluation of CNN-based automatic music tagging models", 2020).

    waveform -> log-mel (128 × 231) -> 7 stride-2 residual blocks -> 512 × 1 × 2
    -> global max pool -> Linear -> BN -> ReLU -> Dropout -> Linear -> logits

The paper's strongest simple baseline (ROC-AUC 0.9129 / PR-AUC 0.4614 on MagnaTagATune after a
200-epoch schedule); about 12.1 M parameters.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor, nn

from model.base import TaggingModel
from model.blocks import res_stack
from model.config import MelConfig, ModelConfig
from model.frontend import MelFrontEnd


@dataclass(frozen=True)
class ResCNNConfig(ModelConfig):
    """Won et al.'s short-chunk ResCNN; the defaults are the reference model (12.1 M).

    Args:
        n_classes: Number of tags, one sigmoid output each.
        audio: Sample rate and window length the model reads (16 kHz, 59,049 samples).
        mel: Log-mel front end (the same as Query2Label's).
        channels: Output width of each stride-2 residual block; one entry per block.
        dropout: Dropout before the final classifier layer.
    """

    mel: MelConfig = field(default_factory=MelConfig)
    channels: tuple[int, ...] = (128, 128, 256, 256, 256, 256, 512)
    dropout: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.channels or min(self.channels) <= 0:
            raise ValueError("channels must be a non-empty list of positive widths")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError("dropout must be in [0, 1)")


class ResCNN(TaggingModel):
    """Won et al.'s `ShortChunkCNN_Res`.

    Shapes:
        waveform (B, T) -> logits (B, n_classes)
    """

    architecture = "rescnn"
    config: ResCNNConfig

    def __init__(self, config: ResCNNConfig) -> None:
        super().__init__()
        self.config = config
        width = config.channels[-1]
        self.frontend = MelFrontEnd(config.audio, config.mel)
        self.backbone = res_stack(1, config.channels)
        self.head = nn.Sequential(
            nn.Linear(width, width),
            nn.BatchNorm1d(width),
            nn.ReLU(),
            nn.Dropout(config.dropout),
            nn.Linear(width, config.n_classes),
        )

    def forward(self, waveform: Tensor) -> Tensor:
        features = self.backbone(self.frontend(waveform))  # (B, C, 1, W) at the default length
        return self.head(features.amax(dim=(2, 3)))
