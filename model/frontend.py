"""Audio front end: waveform -> normalised log-mel spectrogram.

torchaudio computes the mel spectrogram; its filterbank and window are registered buffers, so they
are saved with the weights and a checkpoint always carries the exact filterbank it was trained
with (the upstream bug where an empty filterbank buffer broke loading cannot recur: the loader
checks every buffer's shape).
"""

from __future__ import annotations

import torch
import torchaudio
from torch import Tensor, nn

from model.config import AudioConfig, MelConfig


class MelFrontEnd(nn.Module):
    """Waveform to a batch-normalised log-mel image.

    Args:
        audio: Sample rate of the input.
        mel: Spectrogram parameters.
        bn_eps: Epsilon of the input BatchNorm (1e-5 in PyTorch, 1e-3 for TensorFlow ports).

    Shapes:
        waveform (B, T) -> (B, 1, n_mels, 1 + T // hop_length)
    """

    def __init__(self, audio: AudioConfig, mel: MelConfig, bn_eps: float = 1e-5) -> None:
        super().__init__()
        self.compression = mel.compression
        self.spectrogram = torchaudio.transforms.MelSpectrogram(
            sample_rate=audio.sample_rate,
            n_fft=mel.n_fft,
            hop_length=mel.hop_length,
            f_min=mel.f_min,
            f_max=mel.f_max,
            n_mels=mel.n_mels,
            mel_scale=mel.mel_scale,
            norm="slaney" if mel.slaney_norm else None,
            pad_mode=mel.pad_mode,
        )
        self.to_db = torchaudio.transforms.AmplitudeToDB(stype="power")
        self.bn = nn.BatchNorm2d(1, eps=bn_eps)

    def log_mel(self, waveform: Tensor) -> Tensor:
        """Un-normalised log-mel, (B, T) -> (B, n_mels, frames), always computed in float32."""
        if waveform.dim() != 2:
            raise ValueError(
                f"expected a (batch, samples) waveform, got shape {tuple(waveform.shape)}"
            )
        # An STFT in bf16/fp16 loses most of the dynamic range, so autocast stops here.
        with torch.autocast(device_type=waveform.device.type, enabled=False):
            power = self.spectrogram(waveform.float())
            if self.compression == "db":
                return self.to_db(power)
            return torch.log10(10000.0 * power + 1.0)

    def forward(self, waveform: Tensor) -> Tensor:
        return self.bn(self.log_mel(waveform).unsqueeze(1))
