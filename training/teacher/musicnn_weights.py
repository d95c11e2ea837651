"""Convert the published MTT_musicnn TensorFlow weights into a checkpoint of our `musicnn` preset.

The weights come from the `musicnn==0.1.0` wheel on PyPI (ISC licence; install it with
`pip install --no-deps musicnn==0.1.0`, its modules need TensorFlow and are never imported).
The result is committed as `model/weights/musicnn-mtt.safetensors`, so nothing here runs at
build or serve time:

    python -m training.teacher.musicnn_weights --output model/weights/musicnn-mtt.safetensors

Layout conventions (data-sources.md §1.5): conv kernels are stored HWIO (time, freq, in, out),
dense kernels (in, out); batch norms use TF's epsilon 1e-3, which the `musicnn` preset already
sets. `model/musicnn.py` names the TF layer behind each module.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from model.checkpoint import save_checkpoint
from model.musicnn import Musicnn
from model.tags import MTAT_TAG_NAMES
from model.zoo import build_model
from training.teacher.tf_checkpoint import locate_musicnn_checkpoint, read_tf_checkpoint

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

MUSICNN_PROVENANCE = {
    "source": "musicnn==0.1.0 (PyPI), MTT_musicnn; converted by training.teacher.musicnn_weights",
    "licence": "ISC, (c) Music Technology Group, Universitat Pompeu Fabra 2019 (Jordi Pons); "
    "see model/weights/NOTICE-musicnn.md",
    "training_data": "MagnaTagATune (CC BY-NC-SA 3.0): non-commercial lineage",
    "metrics": {"test_roc_auc": 0.9066769, "test_pr_auc": 0.3831057, "reported_by": "musicnn"},
    "frontend_note": "log-mel computed in float32; musicnn's own float16 cast overflows",
}


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


def load_mtt_musicnn(checkpoint_dir: str | Path) -> Musicnn:
    """A `musicnn` preset model carrying the MTT_musicnn weights, in eval mode."""
    model = build_model("musicnn")
    assert isinstance(model, Musicnn)
    converted = musicnn_state_dict(read_tf_checkpoint(str(checkpoint_dir).rstrip("/") + "/"))
    missing, unexpected = model.load_state_dict(converted, strict=False)
    # Only buffers the TF graph does not have may be missing: the mel filterbank and window,
    # and PyTorch's BN step counters.
    leftover = [n for n in missing if not n.endswith("num_batches_tracked")]
    if unexpected or any(not n.startswith("frontend.spectrogram") for n in leftover):
        raise ValueError(f"weight mapping incomplete: missing {leftover}, unexpected {unexpected}")
    return model.eval()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--checkpoint-dir",
        type=Path,
        default=None,
        help="MTT_musicnn folder (default: found in the installed musicnn wheel)",
    )
    parser.add_argument(
        "--output", type=Path, default=Path("model/weights/musicnn-mtt.safetensors")
    )
    args = parser.parse_args(argv)
    source = args.checkpoint_dir or locate_musicnn_checkpoint("MTT_musicnn")
    model = load_mtt_musicnn(source)
    if model.n_classes != len(MTAT_TAG_NAMES):
        raise ValueError("MTT_musicnn should have 50 outputs")
    path = save_checkpoint(args.output, model, preset="musicnn", provenance=MUSICNN_PROVENANCE)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
