"""Networks, audio front end, windowing and aggregation, and the checkpoint format.

Pure PyTorch: this package imports neither `app` nor `training`.
"""

from model.base import TaggingModel
from model.checkpoint import Checkpoint, CheckpointError, load_checkpoint, save_checkpoint
from model.inference import TrackPrediction, predict_track, predict_windows
from model.tags import MTAT_TAGS, Tag
from model.zoo import PRESETS, build_model, config_for, preset_names

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
