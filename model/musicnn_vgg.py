"""The VGG-like baseline shipped with musicnn (`musicnn.models.vgg`: MTT_vgg, MSD_vgg), laid out
like the TensorFlow original so the published weights load.

    waveform -> Slaney log-mel, log10(10000·x + 1), time × 96 -> BN
    -> 5 × (3 × 3 conv, 128 filters, "same" -> ReLU -> BN -> max-pool)
       pools (time, freq) kernel/stride: (4, 1)/(2, 2), (2, 2)/2, (2, 2)/2, (2, 2)/2, (4, 4)/4
    -> flatten channels-last (TF's NHWC order) -> 256 values -> Dense -> logits

Unlike musicnn, the network does not pool over time at the end: its dense layer reads a fixed
2 × 1 × 128 map, which only inputs of about 3 s produce (the TF code accepts exactly 187 frames;
musicnn's own extractor refuses other lengths for vgg). So the model scores its native 187-frame
patch in one pass, and a longer input (the student's 59,049-sample windows are 231 frames) as the
mean of the sigmoid probabilities of ceil(T / 187) crops of 187 frames, evenly spaced from the
first frame to the last (231 frames: crops at frames 0 and 44), returned as the logit of that
mean so callers apply the sigmoid as for every other model. Shorter inputs are refused.

Batch norms use TensorFlow's epsilon (1e-3). Dropout (0.25 after each pool, 0.5 before the
dense layer in the original) is kept for completeness; it is the identity at inference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model.base import TaggingModel
from model.config import AudioConfig, MelConfig, ModelConfig
from model.frontend import MelFrontEnd

_TF_BN_EPS = 1e-3
_NATIVE_FRAMES = 187
# 186 hops: the centred STFT gives 187 frames, the 3-s patch musicnn's TF graph was built for.
_NATIVE_SAMPLES = (_NATIVE_FRAMES - 1) * 256


def _musicnn_mel() -> MelConfig:
    return MelConfig(
        n_mels=96,
        mel_scale="slaney",
        slaney_norm=True,
        pad_mode="constant",
        compression="log10",
    )


@dataclass(frozen=True)
class MusicnnVggConfig(ModelConfig):
    """musicnn's VGG baseline (MTT_vgg's and MSD_vgg's layout).

    Args:
        n_classes: Number of tags, one sigmoid output each.
        audio: Sample rate and window length (16 kHz, 47,616 samples = the native 187 frames).
        mel: Front end of the published weights: 96 Slaney mels, log10(10000·x + 1).
        filters: Filters of every 3 × 3 convolution.
        pool_time: Max-pool kernel along time, one per block.
        pool_freq: Max-pool kernel along mel, one per block.
        stride_time: Max-pool stride along time, one per block.
        stride_freq: Max-pool stride along mel, one per block.
        patch_frames: Frames of the patch the dense layer was trained on; longer inputs are
            scored as crops of this length.
        block_dropout: Dropout after each pool but the last.
        dropout: Dropout before the dense layer.
    """

    audio: AudioConfig = field(default_factory=lambda: AudioConfig(window_samples=_NATIVE_SAMPLES))
    mel: MelConfig = field(default_factory=_musicnn_mel)
    filters: int = 128
    pool_time: tuple[int, ...] = (4, 2, 2, 2, 4)
    pool_freq: tuple[int, ...] = (1, 2, 2, 2, 4)
    stride_time: tuple[int, ...] = (2, 2, 2, 2, 4)
    stride_freq: tuple[int, ...] = (2, 2, 2, 2, 4)
    patch_frames: int = _NATIVE_FRAMES
    block_dropout: float = 0.25
    dropout: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        pools = (self.pool_time, self.pool_freq, self.stride_time, self.stride_freq)
        if not self.pool_time or len({len(p) for p in pools}) != 1:
            raise ValueError(
                "pool_time, pool_freq, stride_time and stride_freq need one entry per block"
            )
        if any(v <= 0 for p in pools for v in p):
            raise ValueError("pool kernels and strides must be positive")
        if self.filters <= 0:
            raise ValueError(f"filters must be positive, got {self.filters}")
        if not (0.0 <= self.block_dropout < 1.0 and 0.0 <= self.dropout < 1.0):
            raise ValueError("dropout rates must be in [0, 1)")
        time, freq = self.pooled_size
        if time < 1 or freq < 1:
            raise ValueError(
                f"{self.patch_frames} frames × {self.mel.n_mels} mels pool down to nothing "
                f"({time} × {freq}); use fewer or smaller pools or a longer patch"
            )

    @property
    def pooled_size(self) -> tuple[int, int]:
        """(time, mel) size of the last pool's output for a `patch_frames` patch (valid pools)."""
        time, freq = self.patch_frames, self.mel.n_mels
        for kt, kf, st, sf in zip(
            self.pool_time, self.pool_freq, self.stride_time, self.stride_freq, strict=True
        ):
            time, freq = (time - kt) // st + 1, (freq - kf) // sf + 1
        return time, freq

    @property
    def flat_features(self) -> int:
        """Inputs of the dense layer: 2 × 1 × 128 = 256 for the published weights."""
        time, freq = self.pooled_size
        return time * freq * self.filters


class _VggBlock(nn.Module):
    """3 × 3 conv ("same") -> ReLU -> BN -> max-pool (valid, as tf.layers.max_pooling2d).

    Shapes:
        (B, C_in, T, F) -> (B, filters, (T - kt) // st + 1, (F - kf) // sf + 1)
    """

    def __init__(
        self, in_channels: int, filters: int, pool: tuple[int, int], stride: tuple[int, int]
    ) -> None:
        super().__init__()
        # TF "same" for a 3 × 3 kernel at stride 1 pads 1 on every side, like PyTorch's padding=1.
        self.conv = nn.Conv2d(in_channels, filters, 3, padding=1)
        self.bn = nn.BatchNorm2d(filters, eps=_TF_BN_EPS)
        self.pool = nn.MaxPool2d(pool, stride)

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(self.bn(F.relu(self.conv(x))))


class MusicnnVgg(TaggingModel):
    """musicnn's VGG baseline; see the module docstring for how long inputs are scored.

    Shapes:
        waveform (B, samples) -> logits (B, n_classes); needs >= patch_frames frames
    """

    architecture = "musicnn-vgg"
    config: MusicnnVggConfig

    def __init__(self, config: MusicnnVggConfig) -> None:
        super().__init__()
        self.config = config
        # TF: batch_normalization (input)
        self.frontend = MelFrontEnd(config.audio, config.mel, bn_eps=_TF_BN_EPS)
        # TF: 1CNN..5CNN / batch_normalization_1.._5
        channels = [1] + [config.filters] * len(config.pool_time)
        self.blocks = nn.ModuleList(
            _VggBlock(channels[i], channels[i + 1], (kt, kf), (st, sf))
            for i, (kt, kf, st, sf) in enumerate(
                zip(
                    config.pool_time,
                    config.pool_freq,
                    config.stride_time,
                    config.stride_freq,
                    strict=True,
                )
            )
        )
        self.block_dropout = nn.Dropout(config.block_dropout)
        self.dropout = nn.Dropout(config.dropout)
        # TF: dense
        self.dense = nn.Linear(config.flat_features, config.n_classes)

    def crop_starts(self, n_frames: int) -> list[int]:
        """First frame of each `patch_frames` crop scored for an input of `n_frames` frames.

        Raises:
            ValueError: for inputs shorter than one patch.
        """
        patch = self.config.patch_frames
        if n_frames < patch:
            raise ValueError(
                f"musicnn-vgg needs at least {patch} frames "
                f"({(patch - 1) * self.config.mel.hop_length} samples), got {n_frames}"
            )
        n_crops = math.ceil(n_frames / patch)
        if n_crops == 1:
            return [0]
        return [round(i * (n_frames - patch) / (n_crops - 1)) for i in range(n_crops)]

    def forward_patches(self, log_mel: Tensor) -> Tensor:
        """Logits of native patches: un-normalised log-mel (B, patch_frames, n_mels), time × mel
        as musicnn's TF code lays it out -> (B, n_classes)."""
        if log_mel.shape[1] != self.config.patch_frames:
            raise ValueError(
                f"expected {self.config.patch_frames}-frame patches, got {log_mel.shape[1]}"
            )
        x = self.frontend.bn(log_mel.unsqueeze(1))  # (B, 1, T, n_mels)
        for index, block in enumerate(self.blocks):
            x = block(x if index == 0 else self.block_dropout(x))
        # (B, C, T', F') -> NHWC order (B, T', F', C) before flattening, as tf.layers.flatten.
        flat = x.permute(0, 2, 3, 1).flatten(1)  # (B, flat_features)
        return self.dense(self.dropout(flat))

    def forward_log_mel(self, log_mel: Tensor) -> Tensor:
        """Logits from an un-normalised log-mel (B, T, n_mels) of any T >= patch_frames."""
        starts = self.crop_starts(log_mel.shape[1])
        if len(starts) == 1:
            return self.forward_patches(log_mel)
        patch = self.config.patch_frames
        crops = torch.stack([log_mel[:, s : s + patch] for s in starts], dim=1)  # (B, K, P, M)
        logits = self.forward_patches(crops.flatten(0, 1))  # (B·K, C)
        logits = logits.view(log_mel.shape[0], len(starts), -1)  # (B, K, C)
        # Under autocast the crops' logits may be half precision; the mean needs float32 or more.
        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
        # logit(mean_k sigmoid(z_k)) without overflow: log mean p - log mean (1 - p).
        log_n = math.log(len(starts))
        log_p = torch.logsumexp(F.logsigmoid(logits), dim=1) - log_n
        log_q = torch.logsumexp(F.logsigmoid(-logits), dim=1) - log_n
        return log_p - log_q

    def forward(self, waveform: Tensor) -> Tensor:
        return self.forward_log_mel(self.frontend.log_mel(waveform).transpose(1, 2))
