"""Harmonic CNN (Won et al., "Data-driven harmonic filters for audio representation learning").

    waveform -> power STFT -> learnable harmonic band-pass filterbank (6 harmonics × 128 pitch
    bins on a MIDI grid, 2 bins per semitone from C1) -> dB -> BN -> 7 conv blocks with max
    pooling -> global max pool -> Linear -> BN -> ReLU -> Dropout -> Linear -> logits

Input windows are 5 s (80,000 samples). Only the bandwidth's quality factor Q is learned
(`learn_bw='only_Q'` in the original).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torchaudio
from torch import Tensor, nn

from model.base import TaggingModel
from model.config import AudioConfig, ModelConfig

_ERB_ALPHA, _ERB_BETA = 0.1079, 24.7
_MIDI_C1 = 24


@dataclass(frozen=True)
class HarmonicCNNConfig(ModelConfig):
    """Won et al.'s Harmonic CNN; the defaults are the reference model (3.6 M, 80,000 samples).

    Args:
        n_classes: Number of tags, one sigmoid output each.
        audio: Sample rate and window length the model reads.
        n_fft: FFT size of the linear spectrogram the harmonic filters read.
        hop_length: Hop of that spectrogram, in samples.
        n_harmonics: Harmonics per band; each becomes one input channel of the CNN.
        semitone_scale: Filter bands per semitone of the fundamental.
        bandwidth_q: Initial Q factor of the learnable triangular band filters.
        channels: Width of the 2-D convolution stack.
        dropout: Dropout before the final classifier layer.
    """

    n_fft: int = 512
    hop_length: int = 256
    n_harmonics: int = 6
    semitone_scale: int = 2
    bandwidth_q: float = 1.0
    channels: int = 128
    dropout: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n_harmonics <= 0 or self.semitone_scale <= 0 or self.channels <= 0:
            raise ValueError("n_harmonics, semitone_scale and channels must be positive")
        if self.bandwidth_q <= 0:
            raise ValueError("bandwidth_q must be positive")


def _midi_to_hz(midi: Tensor) -> Tensor:
    return 440.0 * 2.0 ** ((midi - 69.0) / 12.0)


def harmonic_center_frequencies(
    sample_rate: int, n_harmonics: int, semitone_scale: int
) -> tuple[Tensor, int]:
    """Centre frequencies of all harmonic bands, harmonic-major, and the pitch bins per harmonic.

    The pitch grid runs from C1 up to the note nearest sample_rate / (2 · n_harmonics), so
    that the highest harmonic of the highest pitch stays below Nyquist.
    """
    top_hz = sample_rate / (2 * n_harmonics)
    high_midi = round(12 * (math.log2(top_hz) - math.log2(440.0)) + 69)
    levels = (high_midi - _MIDI_C1) * semitone_scale
    if levels <= 0:
        raise ValueError(
            f"sample rate {sample_rate} leaves no pitch range for {n_harmonics} harmonics"
        )
    midi = torch.linspace(_MIDI_C1, high_midi, levels + 1)[:-1]
    f0 = _midi_to_hz(midi)
    return torch.cat([f0 * (h + 1) for h in range(n_harmonics)]), levels


class HarmonicSTFT(nn.Module):
    """Power STFT filtered by triangular harmonic bands with a learnable quality factor.

    Shapes:
        waveform (B, T) -> (B, n_harmonics, levels, 1 + T // hop_length) in dB
    """

    center_hz: Tensor
    fft_hz: Tensor

    def __init__(self, audio: AudioConfig, config: HarmonicCNNConfig) -> None:
        super().__init__()
        self.spectrogram = torchaudio.transforms.Spectrogram(
            n_fft=config.n_fft, hop_length=config.hop_length, power=2.0
        )
        self.to_db = torchaudio.transforms.AmplitudeToDB(stype="power")
        centers, self.levels = harmonic_center_frequencies(
            audio.sample_rate, config.n_harmonics, config.semitone_scale
        )
        self.n_harmonics = config.n_harmonics
        self.register_buffer("center_hz", centers, persistent=False)
        fft_hz = torch.linspace(0, audio.sample_rate // 2, config.n_fft // 2 + 1)
        self.register_buffer("fft_hz", fft_hz, persistent=False)
        self.bandwidth_q = nn.Parameter(torch.tensor([config.bandwidth_q]))

    def filterbank(self) -> Tensor:
        """(n_fft // 2 + 1, n_harmonics · levels) triangular filters."""
        center = self.center_hz
        bandwidth = (_ERB_ALPHA * center + _ERB_BETA) / self.bandwidth_q
        freqs = self.fft_hz[:, None]
        rising = (freqs - center) * (2 / bandwidth) + 1
        falling = (center - freqs) * (2 / bandwidth) + 1
        return torch.clamp(torch.minimum(rising, falling), min=0.0)

    def forward(self, waveform: Tensor) -> Tensor:
        with torch.autocast(device_type=waveform.device.type, enabled=False):
            power = self.spectrogram(waveform.float())  # (B, freq, frames)
            bands = torch.matmul(power.transpose(1, 2), self.filterbank()).transpose(1, 2)
            batch, _, frames = bands.shape
            return self.to_db(bands.reshape(batch, self.n_harmonics, self.levels, frames))


class _ConvBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, pool: tuple[int, int]) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.bn = nn.BatchNorm2d(out_channels)
        self.pool = nn.MaxPool2d(pool)

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(torch.relu(self.bn(self.conv(x))))


class _ResPoolBlock(nn.Module):
    """`Res_2d_mp`: two 3×3 convolutions with an identity shortcut, then max pooling."""

    def __init__(self, channels: int, pool: tuple[int, int]) -> None:
        super().__init__()
        self.conv_1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.bn_1 = nn.BatchNorm2d(channels)
        self.conv_2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.bn_2 = nn.BatchNorm2d(channels)
        self.pool = nn.MaxPool2d(pool)

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn_2(self.conv_2(torch.relu(self.bn_1(self.conv_1(x)))))
        return self.pool(torch.relu(x + out))


class HarmonicCNN(TaggingModel):
    """Won et al.'s `HarmonicCNN`.

    Shapes:
        waveform (B, T) -> logits (B, n_classes); T must give at least 64 frames per window
        (the pooling halves time six times), which the 5 s default window does.
    """

    architecture = "hcnn"
    config: HarmonicCNNConfig

    def __init__(self, config: HarmonicCNNConfig) -> None:
        super().__init__()
        self.config = config
        c = config.channels
        self.frontend = HarmonicSTFT(config.audio, config)
        self.frontend_bn = nn.BatchNorm2d(config.n_harmonics)
        self.layers = nn.Sequential(
            _ConvBlock(config.n_harmonics, c, (2, 2)),
            _ResPoolBlock(c, (2, 2)),
            _ResPoolBlock(c, (2, 2)),
            _ResPoolBlock(c, (2, 2)),
            _ConvBlock(c, 2 * c, (2, 2)),
            _ResPoolBlock(2 * c, (2, 3)),
            _ResPoolBlock(2 * c, (2, 3)),
        )
        self.head = nn.Sequential(
            nn.Linear(2 * c, 2 * c),
            nn.BatchNorm1d(2 * c),
            nn.ReLU(),
            nn.Dropout(config.dropout),
            nn.Linear(2 * c, config.n_classes),
        )

    def forward(self, waveform: Tensor) -> Tensor:
        features = self.layers(self.frontend_bn(self.frontend(waveform)))
        return self.head(features.amax(dim=(2, 3)))
