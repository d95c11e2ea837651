"""musicnn's TF variables -> our Musicnn and MusicnnVgg: names, layouts, whole checkpoints.

The TF shapes are written out from musicnn's graph (HWIO conv kernels, (in, out) dense kernels);
values are distinct per element so a wrong transpose cannot pass.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from model.checkpoint import load_checkpoint
from model.musicnn_vgg import MusicnnVgg
from model.tags import MSD_TAG_NAMES, MTAT_TAG_NAMES
from model.zoo import build_model
from tests.training.teacher.test_tf_checkpoint import write_checkpoint
from training.teacher.musicnn_weights import (
    TEACHERS,
    WEIGHTS_DIR,
    load_mtt_musicnn,
    load_teacher,
    main,
    musicnn_state_dict,
    vgg_state_dict,
)

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


def vgg_variables() -> dict[str, np.ndarray]:
    """Every model variable of MTT_vgg / MSD_vgg, with the checkpoint's shapes (as TF lists
    them) and made-up values distinct per element."""
    shapes: dict[str, tuple[int, ...]] = {"1CNN/kernel": (3, 3, 1, 128), "1CNN/bias": (128,)}
    for i in range(2, 6):
        shapes[f"{i}CNN/kernel"] = (3, 3, 128, 128)
        shapes[f"{i}CNN/bias"] = (128,)
    for i, size in enumerate([1] + [128] * 5):
        name = "batch_normalization" if i == 0 else f"batch_normalization_{i}"
        for variable in ("gamma", "beta", "moving_mean", "moving_variance"):
            shapes[f"{name}/{variable}"] = (size,)
    shapes["dense/kernel"] = (256, 50)
    shapes["dense/bias"] = (50,)
    return {
        name: (np.arange(int(np.prod(shape)), dtype=np.float32) / 1000.0).reshape(shape) + n
        for n, (name, shape) in enumerate(sorted(shapes.items()))
    }


def test_the_vgg_checkpoint_has_36_model_variables() -> None:
    # 5 conv and 1 dense kernel/bias pairs, 6 batch norms x 4.
    assert len(vgg_variables()) == 36


def test_vgg_layouts_are_converted_to_pytorch() -> None:
    tf = vgg_variables()
    state = vgg_state_dict(tf)
    # Conv2d: TF (H, W, in, out) -> ours (out, in, H, W).
    assert state["blocks.3.conv.weight"][5, 7, 2, 1].item() == tf["4CNN/kernel"][2, 1, 7, 5]
    assert tuple(state["blocks.0.conv.weight"].shape) == (128, 1, 3, 3)
    # Dense: TF (in, out) -> ours (out, in).
    assert state["dense.weight"][3, 200].item() == tf["dense/kernel"][200, 3]
    # batch_normalization is the input BN; batch_normalization_i follows iCNN.
    np.testing.assert_array_equal(
        state["frontend.bn.running_mean"].numpy(), tf["batch_normalization/moving_mean"]
    )
    np.testing.assert_array_equal(
        state["blocks.4.bn.weight"].numpy(), tf["batch_normalization_5/gamma"]
    )
    assert all(t.dtype == torch.float32 for t in state.values())


def test_a_vgg_checkpoint_on_disk_loads_into_the_vgg_preset(tmp_path: Path) -> None:
    tf = vgg_variables()
    write_checkpoint(f"{tmp_path}/", tf)
    model = load_teacher("MSD_vgg", tmp_path)
    assert isinstance(model, MusicnnVgg)
    np.testing.assert_array_equal(model.state_dict()["dense.bias"].numpy(), tf["dense/bias"])
    assert not model.training


def test_a_musicnn_checkpoint_refuses_the_vgg_layout(tmp_path: Path) -> None:
    write_checkpoint(f"{tmp_path}/", vgg_variables())
    with pytest.raises(KeyError, match="batch_normalization_6"):
        load_teacher("MSD_musicnn", tmp_path)


def test_unknown_teachers_are_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="MSD_musicnn_big"):
        load_teacher("MSD_musicnn_big", tmp_path)


def test_conversion_writes_the_vocabulary_and_provenance_of_each_teacher(tmp_path: Path) -> None:
    for folder, variables in (("vgg", vgg_variables()), ("musicnn", tf_variables())):
        (tmp_path / folder).mkdir()
        write_checkpoint(f"{tmp_path / folder}/", variables)
    cases = [
        ("MSD_vgg", "vgg", "musicnn-vgg", MSD_TAG_NAMES, "Million Song Dataset"),
        ("MTT_vgg", "vgg", "musicnn-vgg", MTAT_TAG_NAMES, "MagnaTagATune"),
        ("MSD_musicnn", "musicnn", "musicnn", MSD_TAG_NAMES, "Million Song Dataset"),
    ]
    for name, folder, preset, names, lineage in cases:
        output = tmp_path / f"{name}.safetensors"
        argv = ["--model", name, "--checkpoint-dir", str(tmp_path / folder)]
        assert main([*argv, "--output", str(output)]) == 0
        checkpoint = load_checkpoint(output)
        assert checkpoint.metadata.preset == preset
        assert tuple(tag.name for tag in checkpoint.metadata.tags) == names
        provenance = checkpoint.metadata.provenance
        assert name in provenance["source"]
        assert lineage in provenance["training_data"]
        assert "ISC" in provenance["licence"]
        assert 0.87 < provenance["metrics"]["test_roc_auc"] < 0.91


def test_all_and_one_checkpoints_options_do_not_mix(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--all", "--output", str(tmp_path / "x.safetensors")])
    assert exit_info.value.code == 2


def test_the_teacher_table_names_the_committed_files() -> None:
    assert {name: t.filename for name, t in TEACHERS.items()} == {
        "MTT_musicnn": "musicnn-mtt.safetensors",
        "MTT_vgg": "musicnn-mtt-vgg.safetensors",
        "MSD_musicnn": "musicnn-msd.safetensors",
        "MSD_vgg": "musicnn-msd-vgg.safetensors",
    }
    for teacher in TEACHERS.values():
        assert (WEIGHTS_DIR / teacher.filename).is_file()
