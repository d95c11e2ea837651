"""The int8 decision both front ends take at start-up, from the checkpoint's calibration file."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from app.pipeline.int8 import plan_int8
from model.checkpoint import load_checkpoint
from model.quantize import calibration_path, cpu_int8_flags
from model.runtime import RuntimeOptions

ROOT = Path(__file__).resolve().parents[3]
# Both bundled calibrations pass their checks and were timed on a VNNI CPU: v1's and v3's.
DEFAULT = ROOT / "model" / "weights" / "default-v1.safetensors"
DEFAULT_V3 = ROOT / "model" / "weights" / "default.safetensors"
CPU = torch.device("cpu")


def test_the_bundled_model_uses_int8_where_the_cpu_has_int8_dot_products() -> None:
    plan = plan_int8(load_checkpoint(DEFAULT), RuntimeOptions(), CPU)
    if cpu_int8_flags():
        assert plan.use, plan.decision.reason
        assert plan.recipe is not None
        assert plan.recipe.observers
        assert "accuracy check passed" in plan.decision.reason
    else:
        assert not plan.use
        assert "no int8 dot products" in plan.decision.reason


def test_the_default_model_keeps_block_0_and_head_fp32_and_is_int8_where_the_cpu_has_vnni() -> None:
    # v3's sidecar keeps block 0 and the head fp32 and passes (max |int8 - fp32| = 0.0241 on 176
    # calibration windows); it measured 1.27x the bf16 fast path on an AVX-512 VNNI CPU.
    checkpoint = load_checkpoint(DEFAULT_V3)
    auto = plan_int8(checkpoint, RuntimeOptions(precision="auto"), CPU)
    if cpu_int8_flags():
        assert auto.use, auto.decision.reason
        assert "accuracy check passed" in auto.decision.reason
    else:
        assert not auto.use
        assert "no int8 dot products" in auto.decision.reason
    forced = plan_int8(checkpoint, RuntimeOptions(precision="int8"), CPU)
    assert forced.use, forced.decision.reason
    assert forced.recipe is not None
    assert forced.recipe.fp32_modules == ("backbone.blocks.0", "head")


def test_without_compilation_int8_is_not_used_and_the_reason_says_so() -> None:
    plan = plan_int8(load_checkpoint(DEFAULT), RuntimeOptions(compile="off"), CPU)
    assert not plan.use
    assert plan.decision.reason == "int8 needs compiled graphs and compilation is off"
    assert plan.fallback(RuntimeOptions(precision="int8")).precision == "auto"


def test_a_checkpoint_without_calibration_is_not_run_in_int8(checkpoint: Path) -> None:
    plan = plan_int8(load_checkpoint(checkpoint), RuntimeOptions(precision="int8"), CPU)
    assert not plan.use
    assert "no int8 calibration q2l-small.int8.safetensors" in plan.decision.reason


def test_another_checkpoints_calibration_is_refused(checkpoint: Path, tmp_path: Path) -> None:
    copy = tmp_path / "other.safetensors"
    shutil.copy(checkpoint, copy)
    shutil.copy(calibration_path(DEFAULT), calibration_path(copy))
    plan = plan_int8(load_checkpoint(copy), RuntimeOptions(precision="int8"), CPU)
    assert not plan.use
    assert plan.decision.reason == "other.int8.safetensors was calibrated for another checkpoint"
