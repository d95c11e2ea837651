"""The int8 path: the rule that chooses it, and its accuracy guard on real music."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from model.audio.decode import decode_audio
from model.checkpoint import load_checkpoint
from model.embedding import split_rows
from model.inference import split_windows
from model.quantize import (
    AccuracyCheck,
    CalibrationError,
    Int8Calibration,
    SpeedCheck,
    accuracy_check,
    calibrate_observers,
    calibration_path,
    cpu_int8_flags,
)
from model.runtime import Runtime, RuntimeOptions, int8_decision

ROOT = Path(__file__).resolve().parents[2]
WEIGHTS = ROOT / "model" / "weights"
# Both bundled models ship an int8 calibration that passes its check: v1 quantises every
# convolution, v3 (the default) keeps its first block and its head fp32.
DEFAULT = WEIGHTS / "default-v1.safetensors"
BUNDLED = [DEFAULT, WEIGHTS / "default.safetensors"]
CPU = torch.device("cpu")
# Not among the calibration windows (scripts/calibrate_int8.py leaves these three out).
TRACKS = [
    "nexuiz-music/brainsukker.ogg",
    "wesnoth-1.16-music/traveling_minstrels.ogg",
    "fretsonfire-songs-muldjord/chaos_god/mix.flac",
]
WINDOWS_PER_TRACK = 24

PASSED = AccuracyCheck(windows=176, max_abs_diff=0.02, top5_agreement=0.97)
FASTER = SpeedCheck(8, 150.0, "bf16", 100.0, "test CPU", ("avx512_vnni",))
SLOWER = SpeedCheck(8, 90.0, "bf16", 100.0, "test CPU", ("avx512_vnni",))
# Timed where int8 has no dot products: faster there says nothing about a VNNI CPU.
FASTER_ON_AVX2 = SpeedCheck(8, 150.0, "fp32", 100.0, "test CPU", ())
# Sidecars older than int8_flags (all timed on a VNNI CPU).
FASTER_UNRECORDED = SpeedCheck(8, 150.0, "bf16", 100.0, "test CPU")


def calibration(
    check: AccuracyCheck = PASSED, speed: SpeedCheck | None = FASTER
) -> Int8Calibration:
    return Int8Calibration("0" * 64, {}, check, speed, "test")


def test_int8_flags_are_read_from_cpuinfo() -> None:
    zen4 = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni\n"
    assert cpu_int8_flags(zen4) == ("avx512_vnni",)
    assert cpu_int8_flags("flags\t\t: fpu sse2 avx2 avx_vnni amx_int8\n") == (
        "avx_vnni",
        "amx_int8",
    )
    assert cpu_int8_flags("flags\t\t: fpu sse2 avx2 fma\n") == ()


@pytest.mark.parametrize(
    ("precision", "flags", "calib", "compile", "use", "reason"),
    [
        ("auto", ("avx512_vnni",), calibration(), "auto", True, "avx512_vnni"),
        ("auto", (), calibration(), "auto", False, "no int8 dot products"),
        ("auto", ("avx512_vnni",), calibration(speed=SLOWER), "auto", False, "not faster"),
        ("auto", ("avx512_vnni",), calibration(speed=None), "auto", False, "not faster"),
        (
            "auto",
            ("avx512_vnni",),
            calibration(speed=FASTER_ON_AVX2),
            "auto",
            False,
            "only measured on a CPU without int8 dot products",
        ),
        ("auto", ("avx512_vnni",), calibration(speed=FASTER_UNRECORDED), "auto", True, "1.50x"),
        ("int8", ("avx512_vnni",), calibration(speed=FASTER_ON_AVX2), "auto", True, "asked for"),
        ("auto", ("avx512_vnni",), None, "auto", False, "no int8 calibration"),
        ("auto", ("avx512_vnni",), calibration(), "off", False, "compilation is off"),
        ("bf16", ("avx512_vnni",), calibration(), "auto", False, "precision bf16"),
        ("int8", (), calibration(speed=SLOWER), "auto", True, "asked for"),
        (
            "int8",
            ("avx512_vnni",),
            calibration(AccuracyCheck(176, 0.05, 0.97)),
            "auto",
            False,
            "fails its own int8 accuracy check",
        ),
        (
            "auto",
            ("avx512_vnni",),
            calibration(AccuracyCheck(176, 0.02, 0.90)),
            "on",
            False,
            "fails its own int8 accuracy check",
        ),
    ],
)
def test_the_int8_rule(
    precision: str,
    flags: tuple[str, ...],
    calib: Int8Calibration | None,
    compile: str,
    use: bool,
    reason: str,
) -> None:
    decision = int8_decision(precision, CPU, compile=compile, cpu_flags=flags, calibration=calib)
    assert decision.use is use
    assert reason in decision.reason


def test_int8_is_never_chosen_on_a_gpu() -> None:
    decision = int8_decision(
        "int8", torch.device("cuda"), compile="auto", cpu_flags=(), calibration=calibration()
    )
    assert not decision.use
    assert "CPUs" in decision.reason


def test_the_accuracy_check_counts_top5_and_the_largest_difference() -> None:
    reference = torch.tensor([[0.9, 0.8, 0.7, 0.6, 0.5, 0.1], [0.9, 0.8, 0.7, 0.6, 0.5, 0.1]])
    quantized = torch.tensor([[0.9, 0.8, 0.7, 0.6, 0.5, 0.11], [0.9, 0.8, 0.7, 0.6, 0.45, 0.48]])
    check = accuracy_check(reference, quantized)
    assert check.windows == 2
    assert check.top5_agreement == pytest.approx(0.5)
    assert check.max_abs_diff == pytest.approx(0.38)
    assert not check.passed


def test_fp32_modules_survive_the_sidecar_and_old_sidecars_read_as_none(tmp_path: Path) -> None:
    kept = Int8Calibration("0" * 64, {}, PASSED, FASTER, "test", ("backbone.blocks.0", "head"))
    loaded = Int8Calibration.load(kept.save(tmp_path / "kept.int8.safetensors"))
    assert loaded.fp32_modules == ("backbone.blocks.0", "head")
    assert loaded.recipe.fp32_modules == ("backbone.blocks.0", "head")
    assert loaded.speed is not None
    assert loaded.speed.int8_flags == ("avx512_vnni",)
    # default-v1's sidecar predates fp32_modules: every convolution is quantised.
    assert Int8Calibration.load(calibration_path(DEFAULT)).fp32_modules == ()


@pytest.mark.parametrize("name", ["blocks.0", "backbone.blocks.99", "dense", "backbone"])
def test_an_unknown_fp32_module_is_refused_by_name(name: str) -> None:
    model = load_checkpoint(DEFAULT).model
    windows = torch.zeros(8, model.audio.window_samples)
    with pytest.raises(CalibrationError, match="neither 'head' nor a module of the backbone"):
        calibrate_observers(model, windows, fp32_modules=(name,))


def test_fp32_modules_get_no_observers() -> None:
    model = load_checkpoint(DEFAULT).model
    windows = torch.randn(8, model.audio.window_samples) * 0.1
    every = calibrate_observers(model, windows)
    fewer = calibrate_observers(model, windows, fp32_modules=("backbone.blocks.0", "head"))
    assert fewer
    assert len(fewer) < len(every)
    assert not any(name.startswith("head") for name in fewer)


@pytest.mark.parametrize("weights", BUNDLED, ids=lambda path: path.stem)
def test_the_bundled_models_ship_a_passing_calibration(weights: Path) -> None:
    shipped = Int8Calibration.load(calibration_path(weights))
    assert shipped.checkpoint_sha256 == load_checkpoint(weights).sha256
    assert shipped.check.passed, shipped.check.describe()
    assert shipped.check.windows >= 100
    assert shipped.observers


@pytest.mark.slow
# Both bundled models: `precision=auto` runs each in int8 on a CPU with int8 dot products. Each
# model costs an int8 package per batch shape to build, and CI has a time budget: chunks of one
# window, one package per model.
@pytest.mark.parametrize("weights", BUNDLED, ids=lambda path: path.stem)
def test_int8_matches_fp32_eager_on_real_music(music: Path, weights: Path) -> None:
    """The accuracy guard: the compiled int8 path against fp32 eager on 72 windows of three
    real tracks the calibration never saw: max |int8 - fp32| <= 0.03, identical top-5 tags on
    at least 95 % of windows."""
    checkpoint = load_checkpoint(weights)
    stacks = []
    for track in TRACKS:
        samples = torch.from_numpy(decode_audio(music / track, sample_rate=16000).samples)
        windows = split_windows(samples, checkpoint.model.audio.window_samples)
        stacks.append(windows[:: max(1, windows.shape[0] // WINDOWS_PER_TRACK)][:WINDOWS_PER_TRACK])
    windows = torch.cat(stacks)
    shipped = Int8Calibration.load(calibration_path(weights))
    reference = Runtime(
        load_checkpoint(weights).model, CPU, RuntimeOptions("fp32", False, "off", embeddings=True)
    )
    int8 = Runtime(
        checkpoint.model,
        CPU,
        # Chunks of 1, like the int8 start-up test's service: its artifact, from the cache.
        RuntimeOptions("int8", compile="on", embeddings=True, max_chunk=1),
        int8_recipe=shipped.recipe,
    )

    n_tags = checkpoint.model.n_classes
    expected, expected_embedding = split_rows(reference(windows), n_tags)
    actual, actual_embedding = split_rows(int8(windows), n_tags)

    assert int8.info().precision == "int8"
    assert int8.info().compiled
    assert (actual - expected).abs().max().item() <= 0.03
    top_expected = expected.topk(5).indices.sort().values
    top_actual = actual.topk(5).indices.sort().values
    agreement = (top_expected == top_actual).all(dim=1).float().mean().item()
    assert agreement >= 0.95, agreement
    # The backbone stays its own int8 graph, so the embedding (its pooled features) survives.
    assert actual_embedding is not None
    assert expected_embedding is not None
    similarity = torch.nn.functional.cosine_similarity(actual_embedding, expected_embedding)
    assert similarity.min().item() >= 0.99, similarity.min().item()
