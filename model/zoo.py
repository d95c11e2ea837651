"""Named presets and the one function that builds a network from a preset or a config."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from model.base import TaggingModel
from model.config import AudioConfig, ModelConfig, config_from_dict, config_to_dict
from model.hcnn import HarmonicCNN, HarmonicCNNConfig
from model.musicnn import Musicnn, MusicnnConfig
from model.musicnn_vgg import MusicnnVgg, MusicnnVggConfig
from model.q2l import Q2LConfig, Query2Label
from model.rescnn import ResCNN, ResCNNConfig

ARCHITECTURES: dict[str, tuple[type[ModelConfig], type[TaggingModel]]] = {
    "q2l": (Q2LConfig, Query2Label),
    "rescnn": (ResCNNConfig, ResCNN),
    "hcnn": (HarmonicCNNConfig, HarmonicCNN),
    "musicnn": (MusicnnConfig, Musicnn),
    "musicnn-vgg": (MusicnnVggConfig, MusicnnVgg),
}

PRESETS: dict[str, tuple[str, ModelConfig]] = {
    # The paper's model: about 18.57 M parameters.
    "q2l-base": ("q2l", Q2LConfig()),
    # Same architecture, narrower, for CPU serving: about 4.7 M parameters.
    "q2l-small": (
        "q2l",
        Q2LConfig(backbone_channels=(64, 64, 128, 128, 256), d_model=256, dim_feedforward=1024),
    ),
    # Won et al.'s 7-block short-chunk ResCNN: about 12.10 M parameters.
    "rescnn": ("rescnn", ResCNNConfig()),
    # Harmonic CNN on 5 s windows.
    "hcnn": ("hcnn", HarmonicCNNConfig(audio=AudioConfig(window_samples=80000))),
    # Musicnn with MTT_musicnn's layer sizes (3 s windows).
    "musicnn": ("musicnn", MusicnnConfig()),
    # musicnn's VGG baseline with MTT_vgg's / MSD_vgg's layer sizes (187-frame patches).
    "musicnn-vgg": ("musicnn-vgg", MusicnnVggConfig()),
}


def preset_names() -> list[str]:
    return list(PRESETS)


def preset_config(preset: str) -> ModelConfig:
    """The config of a named preset.

    Raises:
        ValueError: for an unknown preset, listing the known ones.
    """
    try:
        return PRESETS[preset][1]
    except KeyError:
        raise ValueError(
            f"unknown preset {preset!r}; known presets: {', '.join(PRESETS)}"
        ) from None


def architecture_of(preset: str) -> str:
    preset_config(preset)
    return PRESETS[preset][0]


def config_for(preset: str, overrides: Mapping[str, Any] | None = None) -> ModelConfig:
    """A preset's config, optionally with some fields replaced (e.g. n_classes for own data)."""
    architecture = architecture_of(preset)
    if not overrides:
        return preset_config(preset)
    config_type = ARCHITECTURES[architecture][0]
    merged = {**config_to_dict(preset_config(preset)), **overrides}
    return config_from_dict(config_type, merged)


def build_model(preset: str, config: ModelConfig | None = None) -> TaggingModel:
    """A freshly initialised network for `preset`, or for `config` of that preset's architecture.

    Raises:
        ValueError: for an unknown preset or a config of another architecture.
    """
    architecture = architecture_of(preset)
    config_type, model_type = ARCHITECTURES[architecture]
    config = config if config is not None else preset_config(preset)
    if type(config) is not config_type:
        raise ValueError(
            f"preset {preset!r} needs a {config_type.__name__}, got {type(config).__name__}"
        )
    return model_type(config)
