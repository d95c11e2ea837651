"""MTT_musicnn's TF variables -> our Musicnn: names, layouts, and a whole checkpoint loaded.

The TF shapes are written out from musicnn's graph (HWIO conv kernels, (in, out) dense kernels);
values are distinct per element so a wrong transpose cannot pass.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from model.zoo import build_model
from tests.training.teacher.test_tf_checkpoint import write_checkpoint
from training.teacher.musicnn_weights import load_mtt_musicnn, musicnn_state_dict

BATCH_NORMS = [f"batch_normalization{'' if i == 0 else f'_{i}'}" for i in range(11)]


def tf_variables() -> dict[str, np.ndarray]:
    """Every model variable of MTT_musicnn with the checkpoint's shape and made-up values."""
    ours = build_model("musicnn").state_dict()
    shapes: dict[str, tuple[int, ...]] = {}
    bn_modules = [
        "frontend.bn",
        "timbral.0.bn",
        "timbral.1.bn",
        "temporal.0.bn",
        "temporal.1.bn",
        "temporal.2.bn",
        "midend.0.bn",
        "midend.1.bn",
        "midend.2.bn",
        "pool_bn",
        "dense_bn",
    ]
    for tf_name, module in zip(BATCH_NORMS, bn_modules, strict=True):
        size = tuple(ours[f"{module}.weight"].shape)
        for variable in ("gamma", "beta", "moving_mean", "moving_variance"):
            shapes[f"{tf_name}/{variable}"] = size
    conv2d = ["timbral.0.conv", "timbral.1.conv", "temporal.0.conv", "temporal.1.conv"]
    conv2d.append("temporal.2.conv")
    for k, module in enumerate(conv2d):
        o, i, h, w = ours[f"{module}.weight"].shape
        name = "conv2d" if k == 0 else f"conv2d_{k}"
        shapes[f"{name}/kernel"] = (h, w, i, o)
        shapes[f"{name}/bias"] = (o,)
    for k, module in enumerate(["midend.0.conv", "midend.1.conv", "midend.2.conv"], start=5):
        o, c, t = ours[f"{module}.weight"].shape
        shapes[f"conv2d_{k}/kernel"] = (t, c, 1, o)
        shapes[f"conv2d_{k}/bias"] = (o,)
    for name, module in (("dense", "dense1"), ("dense_1", "dense2")):
        o, i = ours[f"{module}.weight"].shape
        shapes[f"{name}/kernel"] = (i, o)
        shapes[f"{name}/bias"] = (o,)
    return {
        name: (np.arange(int(np.prod(shape)), dtype=np.float32) / 1000.0).reshape(shape) + n
        for n, (name, shape) in enumerate(sorted(shapes.items()))
    }


def test_the_checkpoint_has_64_model_variables() -> None:
    # 8 conv and 2 dense kernel/bias pairs, 11 batch norms x 4 (see read_tf_checkpoint).
    assert len(tf_variables()) == 64


def test_layouts_are_converted_to_pytorch() -> None:
    tf = tf_variables()
    state = musicnn_state_dict(tf)
    # Conv2d: TF (H, W, in, out) -> ours (out, in, H, W).
    assert state["timbral.0.conv.weight"][2, 0, 1, 3].item() == tf["conv2d/kernel"][1, 3, 0, 2]
    # The mid end's conv2d over (time, channels) -> our Conv1d (out, channels, time).
    kernel = tf["conv2d_6/kernel"]
    assert state["midend.1.conv.weight"][4, 5, 6].item() == kernel[6, 5, 0, 4]
    # Dense: TF (in, out) -> ours (out, in).
    assert state["dense2.weight"][3, 7].item() == tf["dense_1/kernel"][7, 3]
    # Batch norms: gamma/beta/moving statistics -> weight/bias/running statistics.
    np.testing.assert_array_equal(
        state["pool_bn.running_var"].numpy(), tf["batch_normalization_9/moving_variance"]
    )
    assert all(t.dtype == torch.float32 for t in state.values())


def test_a_checkpoint_on_disk_loads_into_the_musicnn_preset(tmp_path: Path) -> None:
    tf = tf_variables()
    # musicnn's files are named "<dir>/.index" and "<dir>/.data-00000-of-00001".
    write_checkpoint(f"{tmp_path}/", tf)
    model = load_mtt_musicnn(tmp_path)
    np.testing.assert_array_equal(model.state_dict()["dense1.bias"].numpy(), tf["dense/bias"])
    assert not model.training
