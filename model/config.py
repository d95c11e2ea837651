"""Typed configuration shared by every network in the zoo.

Each architecture has one frozen dataclass config (nanoGPT style). Configs are stored inside
checkpoints as plain JSON, so they must round-trip through `config_to_dict`/`config_from_dict`
without pickling anything.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

MelScale = Literal["htk", "slaney"]
Compression = Literal["db", "log10"]


@dataclass(frozen=True)
class AudioConfig:
    """What a network expects of its input waveform.

    Args:
        sample_rate: Hz of the mono waveform the network reads.
        window_samples: Length of one analysis window; the unit of batching and of training crops.
    """

    sample_rate: int = 16000
    window_samples: int = 59049

    def __post_init__(self) -> None:
        if self.sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {self.sample_rate}")
        if self.window_samples <= 0:
            raise ValueError(f"window_samples must be positive, got {self.window_samples}")

    @property
    def window_seconds(self) -> float:
        return self.window_samples / self.sample_rate


@dataclass(frozen=True)
class MelConfig:
    """Mel spectrogram front end, computed with torchaudio.

    The defaults are the paper's (Won et al.'s) front end: HTK mel scale, no filter
    normalisation, power to dB. Musicnn uses Slaney mels (as librosa) with `log10(10000·x + 1)`
    compression, which is what its published weights were trained on.

    Args:
        n_fft: FFT size in samples (also the window length of the STFT).
        hop_length: Samples between frames.
        n_mels: Mel bands.
        f_min: Lowest mel band edge, Hz.
        f_max: Highest mel band edge, Hz.
        mel_scale: "htk" or "slaney" mel formula.
        slaney_norm: Normalise each filter to unit area (librosa's default, Slaney's).
        pad_mode: How the STFT pads the centred first and last frames.
        compression: "db" (power to decibels) or "log10" (log10(10000·x + 1), musicnn's).
    """

    n_fft: int = 512
    hop_length: int = 256
    n_mels: int = 128
    f_min: float = 0.0
    f_max: float = 8000.0
    mel_scale: MelScale = "htk"
    slaney_norm: bool = False
    pad_mode: str = "reflect"
    compression: Compression = "db"

    def __post_init__(self) -> None:
        if self.n_fft <= 0 or self.hop_length <= 0 or self.n_mels <= 0:
            raise ValueError("n_fft, hop_length and n_mels must be positive")
        if not 0.0 <= self.f_min < self.f_max:
            raise ValueError(f"need 0 <= f_min < f_max, got {self.f_min} and {self.f_max}")
        if self.mel_scale not in ("htk", "slaney"):
            raise ValueError(f"mel_scale must be 'htk' or 'slaney', got {self.mel_scale!r}")
        if self.compression not in ("db", "log10"):
            raise ValueError(f"compression must be 'db' or 'log10', got {self.compression!r}")

    def n_frames(self, n_samples: int) -> int:
        """Frames produced for `n_samples` of audio (torchaudio centres frames)."""
        return 1 + n_samples // self.hop_length


ConfigT = TypeVar("ConfigT")


def config_to_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready dict of a (nested) dataclass config; tuples become lists."""
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise TypeError(f"expected a dataclass instance, got {type(config).__name__}")
    return dataclasses.asdict(config)


def config_from_dict(cls: type[ConfigT], data: Mapping[str, Any]) -> ConfigT:
    """Build `cls` from a dict made by `config_to_dict`, rejecting unknown keys.

    Raises:
        ValueError: on unknown keys, a non-mapping value, or values the config refuses.
    """
    if not isinstance(data, Mapping):
        raise ValueError(f"{cls.__name__} config must be a JSON object, got {type(data).__name__}")
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls} is not a dataclass")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys: {', '.join(unknown)}")
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        hint = hints[name]
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            value = config_from_dict(hint, value)
        elif typing.get_origin(hint) is tuple:
            if not isinstance(value, list | tuple):
                raise ValueError(f"{cls.__name__}.{name} must be a list, got {value!r}")
            value = tuple(value)
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except TypeError as error:  # wrong value types surface here from __post_init__ comparisons
        raise ValueError(f"invalid {cls.__name__}: {error}") from error


@dataclass(frozen=True)
class ModelConfig:
    """Fields every architecture has; each model's config extends it.

    Args:
        n_classes: Number of tags the network scores, one logit each.
        audio: What the network expects of its input waveform.
    """

    n_classes: int = 50
    audio: AudioConfig = dataclasses.field(default_factory=AudioConfig)

    def __post_init__(self) -> None:
        if self.n_classes <= 0:
            raise ValueError(f"n_classes must be positive, got {self.n_classes}")
