"""Convert the four published musicnn TensorFlow checkpoints into checkpoints of our zoo.

The weights come from the `musicnn==0.1.0` wheel on PyPI (ISC licence; install it with
`pip install --no-deps musicnn==0.1.0`, its modules need TensorFlow and are never imported).
The results are committed under `model/weights/`, so nothing here runs at build or serve time:

    python -m training.teacher.musicnn_weights --all

| TF checkpoint | preset        | vocabulary | file                                     |
|---------------|---------------|------------|------------------------------------------|
| MTT_musicnn   | `musicnn`     | MTAT_TAGS  | model/weights/musicnn-mtt.safetensors     |
| MTT_vgg       | `musicnn-vgg` | MTAT_TAGS  | model/weights/musicnn-mtt-vgg.safetensors |
| MSD_musicnn   | `musicnn`     | MSD_TAGS   | model/weights/musicnn-msd.safetensors     |
| MSD_vgg       | `musicnn-vgg` | MSD_TAGS   | model/weights/musicnn-msd-vgg.safetensors |

Layout conventions (data-sources.md §1.5): conv kernels are stored HWIO (time, freq, in, out),
dense kernels (in, out); batch norms use TF's epsilon 1e-3, which both presets already set.
`model/musicnn.py` and `model/musicnn_vgg.py` name the TF layer behind each module.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model.base import TaggingModel
from model.checkpoint import save_checkpoint
from model.musicnn import Musicnn
from model.tags import MSD_TAGS, MTAT_TAGS, Tag
from model.zoo import build_model
from training.teacher.tf_checkpoint import locate_musicnn_checkpoint, read_tf_checkpoint

WEIGHTS_DIR = Path(__file__).resolve().parents[2] / "model" / "weights"

# TF batch_normalization_<i> -> our module, in the order the TF graph creates them.
_BATCH_NORMS = {
    "batch_normalization": "frontend.bn",
    "batch_normalization_1": "timbral.0.bn",
    "batch_normalization_2": "timbral.1.bn",
    "batch_normalization_3": "temporal.0.bn",
    "batch_normalization_4": "temporal.1.bn",
    "batch_normalization_5": "temporal.2.bn",
    "batch_normalization_6": "midend.0.bn",
    "batch_normalization_7": "midend.1.bn",
    "batch_normalization_8": "midend.2.bn",
    "batch_normalization_9": "pool_bn",
    "batch_normalization_10": "dense_bn",
}
_CONV2D = {
    "conv2d": "timbral.0.conv",
    "conv2d_1": "timbral.1.conv",
    "conv2d_2": "temporal.0.conv",
    "conv2d_3": "temporal.1.conv",
    "conv2d_4": "temporal.2.conv",
}
# The mid end's TF conv2d over a (time, all channels) kernel is our Conv1d over channels.
_CONV1D = {"conv2d_5": "midend.0.conv", "conv2d_6": "midend.1.conv", "conv2d_7": "midend.2.conv"}
_DENSE = {"dense": "dense1", "dense_1": "dense2"}

_LICENCE = (
    "ISC, (c) Music Technology Group, Universitat Pompeu Fabra 2019 (Jordi Pons); "
    "see model/weights/NOTICE-musicnn.md"
)
_FRONTEND_NOTE = "log-mel computed in float32; musicnn's own float16 cast overflows"
_MTT_DATA = "MagnaTagATune (CC BY-NC-SA 3.0): non-commercial lineage"
_MSD_DATA = (
    "Million Song Dataset audio previews with the 50 most frequent Last.fm tags "
    "(Last.fm tag data: non-commercial research terms): non-commercial lineage"
)


@dataclass(frozen=True)
class Teacher:
    """One published musicnn checkpoint and what it becomes here.

    `metrics` are the test-set figures of the checkpoint's own `experiment.result` (ROC-AUC and
    PR-AUC, macro over the 50 tags, on Pons et al.'s splits).
    """

    tf_name: str
    preset: str
    tags: tuple[Tag, ...]
    filename: str
    training_data: str
    roc_auc: float
    pr_auc: float

    @property
    def vocabulary(self) -> str:
        return "mtt" if self.tf_name.startswith("MTT") else "msd"

    @property
    def provenance(self) -> dict[str, Any]:
        return {
            "source": f"musicnn==0.1.0 (PyPI), {self.tf_name}; "
            "converted by training.teacher.musicnn_weights",
            "licence": _LICENCE,
            "training_data": self.training_data,
            "vocabulary": f"{self.vocabulary}: musicnn configuration."
            f"{self.vocabulary.upper()}_LABELS order"
            + (", lower-cased" if self.vocabulary == "msd" else ""),
            "metrics": {
                "test_roc_auc": self.roc_auc,
                "test_pr_auc": self.pr_auc,
                "reported_by": f"musicnn {self.tf_name}/experiment.result",
            },
            "frontend_note": _FRONTEND_NOTE,
        }


TEACHERS: dict[str, Teacher] = {
    t.tf_name: t
    for t in (
        Teacher(
            "MTT_musicnn",
            "musicnn",
            MTAT_TAGS,
            "musicnn-mtt.safetensors",
            _MTT_DATA,
            0.9066769,
            0.3831057,
        ),
        Teacher(
            "MTT_vgg",
            "musicnn-vgg",
            MTAT_TAGS,
            "musicnn-mtt-vgg.safetensors",
            _MTT_DATA,
            0.9030269,
            0.3822677,
        ),
        Teacher(
            "MSD_musicnn",
            "musicnn",
            MSD_TAGS,
            "musicnn-msd.safetensors",
            _MSD_DATA,
            0.8801927,
            0.2890643,
        ),
        Teacher(
            "MSD_vgg",
            "musicnn-vgg",
            MSD_TAGS,
            "musicnn-msd-vgg.safetensors",
            _MSD_DATA,
            0.8767615,
            0.2819248,
        ),
    )
}

# MTT_vgg / MSD_vgg: TF {i}CNN and batch_normalization_{i} -> our blocks.{i-1}.
_VGG_BLOCKS = 5


def musicnn_state_dict(tf_weights: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Our `Musicnn` state-dict entries from the 64 TF model variables."""
    state: dict[str, torch.Tensor] = {}

    def put(name: str, array: np.ndarray) -> None:
        state[name] = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))

    for tf_name, ours in _BATCH_NORMS.items():
        put(f"{ours}.weight", tf_weights[f"{tf_name}/gamma"])
        put(f"{ours}.bias", tf_weights[f"{tf_name}/beta"])
        put(f"{ours}.running_mean", tf_weights[f"{tf_name}/moving_mean"])
        put(f"{ours}.running_var", tf_weights[f"{tf_name}/moving_variance"])
    for tf_name, ours in _CONV2D.items():
        put(f"{ours}.weight", tf_weights[f"{tf_name}/kernel"].transpose(3, 2, 0, 1))
        put(f"{ours}.bias", tf_weights[f"{tf_name}/bias"])
    for tf_name, ours in _CONV1D.items():
        kernel = tf_weights[f"{tf_name}/kernel"]  # (7, C, 1, O)
        put(f"{ours}.weight", kernel[:, :, 0, :].transpose(2, 1, 0))  # (O, C, 7)
        put(f"{ours}.bias", tf_weights[f"{tf_name}/bias"])
    for tf_name, ours in _DENSE.items():
        put(f"{ours}.weight", tf_weights[f"{tf_name}/kernel"].T)
        put(f"{ours}.bias", tf_weights[f"{tf_name}/bias"])
    return state


def vgg_state_dict(tf_weights: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Our `MusicnnVgg` state-dict entries from the 36 TF model variables."""
    state: dict[str, torch.Tensor] = {}

    def put(name: str, array: np.ndarray) -> None:
        state[name] = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))

    norms = {"batch_normalization": "frontend.bn"}
    norms.update({f"batch_normalization_{i}": f"blocks.{i - 1}.bn" for i in range(1, 6)})
    for tf_name, ours in norms.items():
        put(f"{ours}.weight", tf_weights[f"{tf_name}/gamma"])
        put(f"{ours}.bias", tf_weights[f"{tf_name}/beta"])
        put(f"{ours}.running_mean", tf_weights[f"{tf_name}/moving_mean"])
        put(f"{ours}.running_var", tf_weights[f"{tf_name}/moving_variance"])
    for i in range(1, _VGG_BLOCKS + 1):
        put(f"blocks.{i - 1}.conv.weight", tf_weights[f"{i}CNN/kernel"].transpose(3, 2, 0, 1))
        put(f"blocks.{i - 1}.conv.bias", tf_weights[f"{i}CNN/bias"])
    # Both sides flatten (time, mel, channel) in that order (the model permutes to NHWC first),
    # so the dense kernel needs only the (in, out) -> (out, in) transpose.
    put("dense.weight", tf_weights["dense/kernel"].T)
    put("dense.bias", tf_weights["dense/bias"])
    return state


_STATE_DICTS = {"musicnn": musicnn_state_dict, "musicnn-vgg": vgg_state_dict}


def load_teacher(name: str, checkpoint_dir: str | Path | None = None) -> TaggingModel:
    """A zoo model carrying the weights of musicnn's `name` checkpoint, in eval mode.

    Args:
        name: One of `TEACHERS` (MTT_musicnn, MTT_vgg, MSD_musicnn, MSD_vgg).
        checkpoint_dir: The TF checkpoint folder (default: found in the installed musicnn wheel).
    """
    if name not in TEACHERS:
        raise ValueError(f"unknown musicnn checkpoint {name!r}; expected one of {list(TEACHERS)}")
    teacher = TEACHERS[name]
    source = checkpoint_dir if checkpoint_dir is not None else locate_musicnn_checkpoint(name)
    tf_weights = read_tf_checkpoint(str(source).rstrip("/") + "/")
    model = build_model(teacher.preset)
    converted = _STATE_DICTS[teacher.preset](tf_weights)
    missing, unexpected = model.load_state_dict(converted, strict=False)
    # Only buffers the TF graph does not have may be missing: the mel filterbank and window,
    # and PyTorch's BN step counters.
    leftover = [n for n in missing if not n.endswith("num_batches_tracked")]
    if unexpected or any(not n.startswith("frontend.spectrogram") for n in leftover):
        raise ValueError(f"weight mapping incomplete: missing {leftover}, unexpected {unexpected}")
    if model.n_classes != len(teacher.tags):
        raise ValueError(f"{name} should have {len(teacher.tags)} outputs")
    return model.eval()


def load_mtt_musicnn(checkpoint_dir: str | Path) -> Musicnn:
    """A `musicnn` preset model carrying the MTT_musicnn weights, in eval mode."""
    model = load_teacher("MTT_musicnn", checkpoint_dir)
    assert isinstance(model, Musicnn)
    return model


def convert(name: str, output: Path, checkpoint_dir: Path | None = None) -> Path:
    """Write musicnn's `name` checkpoint as one of our safetensors checkpoints."""
    teacher = TEACHERS[name]
    model = load_teacher(name, checkpoint_dir)
    return save_checkpoint(
        output, model, preset=teacher.preset, tags=teacher.tags, provenance=teacher.provenance
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--all", action="store_true", help="convert all four checkpoints")
    which.add_argument(
        "--model", choices=list(TEACHERS), default="MTT_musicnn", help="convert one checkpoint"
    )
    parser.add_argument(
        "--checkpoint-dir",
        type=Path,
        default=None,
        help="the TF checkpoint folder of --model (default: found in the installed musicnn wheel)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="file for --model (default: its name in --out-dir)",
    )
    parser.add_argument("--out-dir", type=Path, default=WEIGHTS_DIR)
    args = parser.parse_args(argv)
    if args.all and (args.checkpoint_dir is not None or args.output is not None):
        parser.error("--checkpoint-dir and --output name one checkpoint; use them with --model")
    names = list(TEACHERS) if args.all else [args.model]
    for name in names:
        output = args.output or args.out_dir / TEACHERS[name].filename
        path = convert(name, output, args.checkpoint_dir)
        print(f"{name} -> {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
