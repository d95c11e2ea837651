"""Networks, audio front end, windowing and aggregation, and the checkpoint format.

Pure PyTorch: this package imports neither `app` nor `training`. Its names are imported on
first use, so `model.audio` (decoding, which needs no torch) stays light: the service's decode
worker processes import it without loading torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from model.base import TaggingModel
    from model.checkpoint import Checkpoint, CheckpointError, load_checkpoint, save_checkpoint
    from model.inference import TrackPrediction, predict_track, predict_windows
    from model.tags import MTAT_TAGS, Tag
    from model.zoo import PRESETS, build_model, config_for, preset_names

_HOMES = {
    "TaggingModel": "model.base",
    "Checkpoint": "model.checkpoint",
    "CheckpointError": "model.checkpoint",
    "load_checkpoint": "model.checkpoint",
    "save_checkpoint": "model.checkpoint",
    "TrackPrediction": "model.inference",
    "predict_track": "model.inference",
    "predict_windows": "model.inference",
    "MTAT_TAGS": "model.tags",
    "Tag": "model.tags",
    "PRESETS": "model.zoo",
    "build_model": "model.zoo",
    "config_for": "model.zoo",
    "preset_names": "model.zoo",
}

__all__ = [
    "MTAT_TAGS",
    "PRESETS",
    "Checkpoint",
    "CheckpointError",
    "Tag",
    "TaggingModel",
    "TrackPrediction",
    "build_model",
    "config_for",
    "load_checkpoint",
    "predict_track",
    "predict_windows",
    "preset_names",
    "save_checkpoint",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'model' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # later lookups skip this function
    return value
