"""Musicnn (Pons and Serra, "musicnn: pre-trained convolutional neural networks for music audio
tagging", 2019), laid out like the TensorFlow original so the published MTT_musicnn weights load.

    waveform (3 s) -> Slaney log-mel, log10(10000·x + 1), time × 96 -> BN
    -> front end: 2 timbral convs (7 × 38, 7 × 67; 204 filters) and 3 temporal convs
       (128, 64, 32 frames; 51 filters), each conv -> ReLU -> BN -> max over frequency
    -> mid end: 3 dense 7-tap convs (64 filters) with residual connections
    -> max and mean over time, interleaved -> BN -> Dense 200 -> ReLU -> BN -> Dense -> logits

Batch norms use TensorFlow's epsilon (1e-3). The TF layer each module comes from is named in its
comment, which is all a weight converter needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model.base import TaggingModel
from model.config import AudioConfig, MelConfig, ModelConfig
from model.frontend import MelFrontEnd

_TF_BN_EPS = 1e-3


def _musicnn_mel() -> MelConfig:
    return MelConfig(
        n_mels=96,
        mel_scale="slaney",
        slaney_norm=True,
        pad_mode="constant",
        compression="log10",
    )


@dataclass(frozen=True)
class MusicnnConfig(ModelConfig):
    """Pons et al.'s Musicnn laid out like the TensorFlow original (MTT_musicnn's layout).

    Args:
        n_classes: Number of tags, one sigmoid output each.
        audio: Sample rate and window length the model reads (16 kHz, 48,000 samples = 3 s).
        mel: Front end of the published weights: 96 Slaney mels, log10(10000·x + 1).
        timbral_filters: Filters of each timbral (vertical) convolution.
        timbral_heights: Kernel heights of the timbral convolutions, as fractions of n_mels.
        temporal_filters: Filters of each temporal (horizontal) convolution.
        temporal_lengths: Kernel lengths of the temporal convolutions, in frames.
        midend_filters: Filters of each mid-end 1-D convolution layer.
        midend_layers: Mid-end layers; each after the first adds a residual, and the back end
            pools the front end and every mid-end output together.
        dense_units: Width of the penultimate dense layer of the back end.
        dropout: Dropout before the output layer.
    """

    audio: AudioConfig = field(default_factory=lambda: AudioConfig(window_samples=48000))
    mel: MelConfig = field(default_factory=_musicnn_mel)
    timbral_filters: int = 204
    timbral_heights: tuple[float, ...] = (0.4, 0.7)
    temporal_filters: int = 51
    temporal_lengths: tuple[int, ...] = (128, 64, 32)
    midend_filters: int = 64
    midend_layers: int = 3
    dense_units: int = 200
    dropout: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        if any(not 0.0 < h <= 1.0 for h in self.timbral_heights):
            raise ValueError("timbral_heights must be fractions in (0, 1]")
        if any(k <= 0 for k in self.temporal_lengths):
            raise ValueError("temporal_lengths must be positive")
        if min(self.timbral_filters, self.temporal_filters, self.midend_filters) <= 0:
            raise ValueError("filter counts must be positive")
        if self.midend_layers < 1 or self.dense_units <= 0:
            raise ValueError("need midend_layers >= 1 and dense_units > 0")

    @property
    def frontend_channels(self) -> int:
        return (
            len(self.timbral_heights) * self.timbral_filters
            + len(self.temporal_lengths) * self.temporal_filters
        )


class _FrequencyPooledConv(nn.Module):
    """Conv over (time, mel) -> ReLU -> BN -> max over the remaining mel axis.

    `time_padding` is (before, after): the timbral convs pad 3/3 explicitly, the temporal ones
    reproduce TF's "same" padding, which puts the odd extra frame after.

    Shapes:
        (B, 1, T, n_mels) -> (B, filters, T)
    """

    def __init__(self, filters: int, kernel: tuple[int, int], time_padding: tuple[int, int]):
        super().__init__()
        self.time_padding = time_padding
        self.conv = nn.Conv2d(1, filters, kernel)
        self.bn = nn.BatchNorm2d(filters, eps=_TF_BN_EPS)

    def forward(self, x: Tensor) -> Tensor:
        x = F.pad(x, (0, 0, *self.time_padding))
        return self.bn(F.relu(self.conv(x))).amax(dim=3)


class _MidEndLayer(nn.Module):
    """7-tap convolution across all channels (TF: conv2d with a 7 × C kernel) -> ReLU -> BN.

    Shapes:
        (B, C, T) -> (B, filters, T)
    """

    def __init__(self, in_channels: int, filters: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(in_channels, filters, 7, padding=3)
        self.bn = nn.BatchNorm1d(filters, eps=_TF_BN_EPS)

    def forward(self, x: Tensor) -> Tensor:
        return self.bn(F.relu(self.conv(x)))


class Musicnn(TaggingModel):
    """Musicnn with the MTT_musicnn layer sizes.

    Shapes:
        waveform (B, T) -> logits (B, n_classes)
    """

    architecture = "musicnn"
    config: MusicnnConfig

    def __init__(self, config: MusicnnConfig) -> None:
        super().__init__()
        self.config = config
        n_mels = config.mel.n_mels
        # TF: batch_normalization (input)
        self.frontend = MelFrontEnd(config.audio, config.mel, bn_eps=_TF_BN_EPS)
        # TF: conv2d, conv2d_1 / batch_normalization_1, _2
        self.timbral = nn.ModuleList(
            _FrequencyPooledConv(config.timbral_filters, (7, int(h * n_mels)), (3, 3))
            for h in config.timbral_heights
        )
        # TF: conv2d_2, _3, _4 / batch_normalization_3, _4, _5
        self.temporal = nn.ModuleList(
            _FrequencyPooledConv(config.temporal_filters, (k, 1), ((k - 1) // 2, k // 2))
            for k in config.temporal_lengths
        )
        # TF: conv2d_5, _6, _7 / batch_normalization_6, _7, _8
        widths = [config.frontend_channels] + [config.midend_filters] * config.midend_layers
        self.midend = nn.ModuleList(
            _MidEndLayer(widths[i], widths[i + 1]) for i in range(config.midend_layers)
        )
        pooled = 2 * (config.frontend_channels + config.midend_layers * config.midend_filters)
        # TF: batch_normalization_9, dense, batch_normalization_10, dense_1
        self.pool_bn = nn.BatchNorm1d(pooled, eps=_TF_BN_EPS)
        self.dense1 = nn.Linear(pooled, config.dense_units)
        self.dense_bn = nn.BatchNorm1d(config.dense_units, eps=_TF_BN_EPS)
        self.dense2 = nn.Linear(config.dense_units, config.n_classes)
        self.dropout = nn.Dropout(config.dropout)

    def forward_log_mel(self, log_mel: Tensor) -> Tensor:
        """Logits from an un-normalised log-mel (B, T, n_mels), as musicnn's TF code lays it out."""
        return self._logits_and_penultimate(log_mel)[0]

    def _logits_and_penultimate(self, log_mel: Tensor) -> tuple[Tensor, Tensor]:
        x = self.frontend.bn(log_mel.unsqueeze(1))  # (B, 1, T, n_mels)
        front = torch.cat([branch(x) for branch in (*self.timbral, *self.temporal)], dim=1)
        features = [front]
        hidden = front
        for index, layer in enumerate(self.midend):
            out = layer(hidden)
            hidden = out if index == 0 else out + hidden
            features.append(hidden)
        stacked = torch.cat(features, dim=1)  # (B, C, T)
        pooled = torch.stack((stacked.amax(dim=2), stacked.mean(dim=2)), dim=2).flatten(1)
        hidden = F.relu(self.dense1(self.dropout(self.pool_bn(pooled))))  # (B, dense_units)
        return self.dense2(self.dropout(self.dense_bn(hidden))), hidden

    def forward(self, waveform: Tensor) -> Tensor:
        return self.forward_log_mel(self.frontend.log_mel(waveform).transpose(1, 2))

    embedding_kind = "penultimate-dense"
    """The 200-unit layer before the classifier: what musicnn's own extractor returns."""

    @property
    def embedding_dim(self) -> int:
        return self.config.dense_units

    def forward_with_embedding(self, waveform: Tensor) -> tuple[Tensor, Tensor]:
        return self._logits_and_penultimate(self.frontend.log_mel(waveform).transpose(1, 2))
