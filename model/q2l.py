"""Query2Label music tagger.

Yang, "Improving CNN-based Music Tagging with Query2Label Transformer".

Follows the paper's released code rather than its prose:

    waveform -> log-mel (128 × 231 for 59,049 samples) -> 5 stride-2 residual blocks
    -> 1×1 dense head -> C × 4 × 8 feature map -> 1×1 input projection -> 32 tokens
    + 2-D sine position encoding -> transformer (1 encoder layer, 2 decoder layers whose
    queries are learnable label embeddings, no decoder self-attention, post-norm)
    -> GroupWiseLinear: one weight vector and bias per label -> logits

Two deliberate departures, both invisible at the paper's input length: the position encoding is
computed from the actual token grid (the original buffer was fixed to 4 × 8, so any other input
length crashed), and the model returns logits instead of probabilities.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model.base import TaggingModel
from model.blocks import res_stack
from model.config import MelConfig, ModelConfig
from model.frontend import MelFrontEnd


@dataclass(frozen=True)
class Q2LConfig(ModelConfig):
    """The Query2Label tagger's architecture; the defaults are the paper's model.

    Args:
        n_classes: Number of tags; one learnable label query and one output per tag.
        audio: Sample rate and window length the model reads (16 kHz, 59,049 samples).
        mel: Log-mel front end (n_fft 512, hop 256, 128 HTK mels, 0-8 kHz, dB).
        backbone_channels: Output width of each stride-2 residual block; the number of entries
            is the number of blocks (5 turn 128 × 231 mel frames into a 4 × 8 grid).
        head_dropout: Dropout inside the 1×1 dense head between backbone and transformer.
        d_model: Width of the tokens, label queries and every transformer layer.
        n_heads: Attention heads per layer; must divide `d_model`.
        n_encoder_layers: Self-attention layers over the audio tokens (0 feeds the backbone's
            tokens to the decoder directly).
        n_decoder_layers: Layers in which the label queries cross-attend to the audio tokens.
        dim_feedforward: Hidden width of each layer's feed-forward block.
        dropout: Dropout in attention, feed-forward and residual paths of the transformer.
        decoder_self_attention: Let label queries attend to each other too (Q2L removes this;
            re-adding it is a cheap ablation).
    """

    mel: MelConfig = field(default_factory=MelConfig)
    backbone_channels: tuple[int, ...] = (128, 128, 256, 256, 512)
    head_dropout: float = 0.5
    d_model: int = 512
    n_heads: int = 4
    n_encoder_layers: int = 1
    n_decoder_layers: int = 2
    dim_feedforward: int = 2048
    dropout: float = 0.1
    decoder_self_attention: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.backbone_channels or min(self.backbone_channels) <= 0:
            raise ValueError("backbone_channels must be a non-empty list of positive widths")
        if self.d_model <= 0 or self.d_model % self.n_heads != 0:
            raise ValueError(f"d_model ({self.d_model}) must be a positive multiple of n_heads")
        if self.d_model % 4 != 0:
            raise ValueError("d_model must be divisible by 4 for the 2-D sine position encoding")
        if self.n_encoder_layers < 0 or self.n_decoder_layers < 1:
            raise ValueError("need n_encoder_layers >= 0 and n_decoder_layers >= 1")
        if self.dim_feedforward <= 0:
            raise ValueError("dim_feedforward must be positive")
        for name in ("dropout", "head_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1)")


def sine_position_encoding(
    height: int,
    width: int,
    dim: int,
    *,
    temperature: float = 10000.0,
    device: torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """DETR's normalised 2-D sine encoding for a height × width grid, flattened row-major.

    Positions are 1-based and divided by the last one, then scaled to 2π. Each axis gets
    `dim // 2` features, sin and cos interleaved; the y (frequency) half comes first.

    Returns:
        (height * width, dim)
    """
    if dim % 4 != 0:
        raise ValueError(f"dim must be divisible by 4, got {dim}")
    half = dim // 2
    eps, scale = 1e-6, 2 * math.pi
    y = torch.arange(1, height + 1, device=device, dtype=torch.float32)
    x = torch.arange(1, width + 1, device=device, dtype=torch.float32)
    y = y / (y[-1] + eps) * scale
    x = x / (x[-1] + eps) * scale
    dim_t = torch.arange(half, device=device, dtype=torch.float32)
    dim_t = temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / half)

    def _interleave(positions: Tensor) -> Tensor:  # (n,) -> (n, half)
        angles = positions[:, None] / dim_t
        return torch.stack((angles[:, 0::2].sin(), angles[:, 1::2].cos()), dim=2).flatten(1)

    pos_y = _interleave(y)[:, None, :].expand(height, width, half)
    pos_x = _interleave(x)[None, :, :].expand(height, width, half)
    return torch.cat((pos_y, pos_x), dim=2).reshape(height * width, dim).to(dtype)


class _FeedForward(nn.Module):
    def __init__(self, d_model: int, dim_feedforward: int, dropout: float) -> None:
        super().__init__()
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear2(self.dropout(F.relu(self.linear1(x))))


class _EncoderLayer(nn.Module):
    """Post-norm self-attention layer; the position encoding enters queries and keys only."""

    def __init__(self, config: Q2LConfig) -> None:
        super().__init__()
        d = config.d_model
        self.self_attn = nn.MultiheadAttention(
            d, config.n_heads, dropout=config.dropout, batch_first=True
        )
        self.ffn = _FeedForward(d, config.dim_feedforward, config.dropout)
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.dropout1, self.dropout2 = nn.Dropout(config.dropout), nn.Dropout(config.dropout)

    def forward(self, src: Tensor, pos: Tensor) -> Tensor:
        q = k = src + pos
        attended = self.self_attn(q, k, value=src, need_weights=False)[0]
        src = self.norm1(src + self.dropout1(attended))
        return self.norm2(src + self.dropout2(self.ffn(src)))


class _DecoderLayer(nn.Module):
    """Label queries attend to the audio tokens; label embeddings are re-added at every layer."""

    def __init__(self, config: Q2LConfig) -> None:
        super().__init__()
        d = config.d_model
        self.self_attn: nn.MultiheadAttention | None = None
        if config.decoder_self_attention:
            self.self_attn = nn.MultiheadAttention(
                d, config.n_heads, dropout=config.dropout, batch_first=True
            )
            self.norm_self = nn.LayerNorm(d)
            self.dropout_self = nn.Dropout(config.dropout)
        self.cross_attn = nn.MultiheadAttention(
            d, config.n_heads, dropout=config.dropout, batch_first=True
        )
        self.ffn = _FeedForward(d, config.dim_feedforward, config.dropout)
        self.norm2, self.norm3 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.dropout2, self.dropout3 = nn.Dropout(config.dropout), nn.Dropout(config.dropout)

    def forward(self, tgt: Tensor, memory: Tensor, pos: Tensor, query_pos: Tensor) -> Tensor:
        if self.self_attn is not None:
            q = k = tgt + query_pos
            tgt = self.norm_self(tgt + self.dropout_self(self.self_attn(q, k, tgt)[0]))
        attended = self.cross_attn(
            query=tgt + query_pos, key=memory + pos, value=memory, need_weights=False
        )[0]
        tgt = self.norm2(tgt + self.dropout2(attended))
        return self.norm3(tgt + self.dropout3(self.ffn(tgt)))


class GroupWiseLinear(nn.Module):
    """One weight vector and bias per label: logit_k = <W_k, h_k> + b_k.

    Shapes:
        (B, n_classes, dim) -> (B, n_classes)
    """

    def __init__(self, n_classes: int, dim: int) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(dim)
        self.weight = nn.Parameter(torch.empty(1, n_classes, dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(1, n_classes).uniform_(-bound, bound))

    def forward(self, x: Tensor) -> Tensor:
        return (self.weight * x).sum(-1) + self.bias


class Query2Label(TaggingModel):
    """ResCNN backbone + Query2Label transformer decoder.

    Args:
        config: Architecture hyperparameters; `Q2LConfig()` is the paper's model (18.57 M).

    Shapes:
        waveform (B, T) -> logits (B, n_classes). T may differ from the training window; the
        token grid follows the input (4 × 8 tokens for 59,049 samples).
    """

    architecture = "q2l"
    config: Q2LConfig

    def __init__(self, config: Q2LConfig) -> None:
        super().__init__()
        self.config = config
        width = config.backbone_channels[-1]
        self.frontend = MelFrontEnd(config.audio, config.mel)
        self.backbone = res_stack(1, config.backbone_channels)
        self.dense = nn.Sequential(
            nn.Conv2d(width, width, 1),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.Dropout(config.head_dropout),
            nn.Conv2d(width, width, 1),
        )
        self.input_proj = nn.Conv2d(width, config.d_model, 1)
        self.encoder = nn.ModuleList(_EncoderLayer(config) for _ in range(config.n_encoder_layers))
        self.decoder = nn.ModuleList(_DecoderLayer(config) for _ in range(config.n_decoder_layers))
        self.decoder_norm = nn.LayerNorm(config.d_model)
        self.query_embed = nn.Embedding(config.n_classes, config.d_model)
        self.classifier = GroupWiseLinear(config.n_classes, config.d_model)
        for module in (self.encoder, self.decoder, self.decoder_norm):
            for parameter in module.parameters():
                if parameter.dim() > 1:
                    nn.init.xavier_uniform_(parameter)

    def tokens(self, waveform: Tensor) -> tuple[Tensor, Tensor]:
        """Audio tokens and their position encoding: (B, H·W, d_model) and (1, H·W, d_model).

        Shapes are given for the paper's geometry (59,049 samples, 5 blocks, d_model 512).
        """
        return self._tokens_from(self._backbone_features(waveform))

    def _backbone_features(self, waveform: Tensor) -> Tensor:
        mel = self.frontend(waveform)  # (B, T) -> (B, 1, 128 mels, 231 frames)
        return self.backbone(mel)  # -> (B, C, 4, 8): each block halves both axes

    def forward_log_mel(self, log_mel: Tensor) -> Tensor:
        """Logits from an un-normalised log-mel, `frontend.log_mel`'s output: (B, n_mels,
        frames) -> (B, n_classes).

        Training reads log-mels computed once per track and crops them, so an epoch costs no
        STFT; `forward(w)` is `forward_log_mel(frontend.log_mel(w))`.
        """
        mel = self.frontend.bn(log_mel.float().unsqueeze(1))  # -> (B, 1, n_mels, frames)
        return self._logits(*self._tokens_from(self.backbone(mel)))

    def _tokens_from(self, features: Tensor) -> tuple[Tensor, Tensor]:
        features = self.dense(features)  # (B, C, 4, 8) -> (B, C, 4, 8), 1×1 convolutions
        features = self.input_proj(features)  # -> (B, d_model, 4, 8)
        _, _, height, width = features.shape
        pos = sine_position_encoding(  # (H·W, d_model), from the actual grid
            height, width, self.config.d_model, device=features.device, dtype=features.dtype
        )
        # (B, d_model, H, W) -> (B, H·W, d_model): frequency-major tokens, as `pos` is laid out
        return features.flatten(2).transpose(1, 2), pos.unsqueeze(0)

    def forward(self, waveform: Tensor) -> Tensor:
        return self._logits(*self.tokens(waveform))

    embedding_kind = "backbone-mean-max"
    """The backbone's last feature map, mean- and max-pooled over its 4 × 8 grid: of the layers
    measured (docs/similarity.md) the one that finds a track's other half best."""

    @property
    def embedding_dim(self) -> int:
        return 2 * self.config.backbone_channels[-1]

    def forward_with_embedding(self, waveform: Tensor) -> tuple[Tensor, Tensor]:
        features = self._backbone_features(waveform)  # (B, C, 4, 8)
        logits = self._logits(*self._tokens_from(features))
        pooled = torch.cat((features.mean(dim=(2, 3)), features.amax(dim=(2, 3))), dim=1)
        return logits, pooled  # (B, n_classes), (B, 2C)

    def memory_and_embedding(self, waveform: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """What every label query reads, and the pooled embedding: the frozen part of the model
        that a tag set's new queries are taught on (model.tagset).

        Returns:
            memory (B, 32, d_model), its position encoding (1, 32, d_model), and the pooled
            embedding (B, 2C) before normalisation
        """
        features = self._backbone_features(waveform)
        tokens, pos = self._tokens_from(features)
        pooled = torch.cat((features.mean(dim=(2, 3)), features.amax(dim=(2, 3))), dim=1)
        return self.encode_tokens(tokens, pos), pos, pooled

    def _logits(self, memory: Tensor, pos: Tensor) -> Tensor:
        memory = self.encode_tokens(memory, pos)
        return self.decode(memory, pos, self.query_embed.weight, self.classifier)

    def encode_tokens(self, tokens: Tensor, pos: Tensor) -> Tensor:
        """The encoder's output, the memory every label query reads: (B, 32, d_model)."""
        memory = tokens  # (B, 32, d_model): the audio tokens; pos (1, 32, d_model)
        for layer in self.encoder:
            memory = layer(memory, pos)  # (B, 32, d_model): tokens attend to each other
        return memory

    def decode(
        self, memory: Tensor, pos: Tensor, queries: Tensor, classifier: GroupWiseLinear
    ) -> Tensor:
        """Logits of `queries` (K, d_model) read from `memory` through `classifier` (K rows).

        The decoder has no self-attention between queries, so each query's logit depends on
        that query and the memory only: a tag set (model.tagset) runs its own queries through
        this same function, beside the base queries, without changing their scores.
        """
        # One learnable query per label, shared by the batch: (K, d) -> (B, K, d)
        query_pos = queries.unsqueeze(0).expand(memory.shape[0], -1, -1)
        # The decoder's content starts at zero; the label embedding is re-added at every layer
        # as the query's "position", as in the released code.
        hidden = torch.zeros_like(query_pos)  # (B, K, d_model)
        for layer in self.decoder:
            hidden = layer(hidden, memory, pos, query_pos)  # each query cross-attends to memory
        hidden = self.decoder_norm(hidden)  # (B, K, d_model)
        return classifier(hidden)  # (B, K): one logit per label, from its query
