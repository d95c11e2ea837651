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
    Int8Calibration,
    SpeedCheck,
    accuracy_check,
    calibration_path,
    cpu_int8_flags,
)
from model.runtime import Runtime, RuntimeOptions, int8_decision

ROOT = Path(__file__).resolve().parents[2]
# v1 ships an int8 calibration that passes its check (default-v1.int8.safetensors); v2 fails it.
DEFAULT = ROOT / "model" / "weights" / "default-v1.safetensors"
CPU = torch.device("cpu")
# Not among the calibration windows (scripts/calibrate_int8.py leaves these three out).
TRACKS = [
    "nexuiz-music/brainsukker.ogg",
    "wesnoth-1.16-music/traveling_minstrels.ogg",
    "fretsonfire-songs-muldjord/chaos_god/mix.flac",
]
WINDOWS_PER_TRACK = 24

PASSED = AccuracyCheck(windows=176, max_abs_diff=0.02, top5_agreement=0.97)
FASTER = SpeedCheck(8, 150.0, "bf16", 100.0, "test CPU")
SLOWER = SpeedCheck(8, 90.0, "bf16", 100.0, "test CPU")


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


def test_the_bundled_model_ships_a_passing_calibration() -> None:
    shipped = Int8Calibration.load(calibration_path(DEFAULT))
    assert shipped.checkpoint_sha256 == load_checkpoint(DEFAULT).sha256
    assert shipped.check.passed, shipped.check.describe()
    assert shipped.check.windows >= 100
    assert shipped.observers


@pytest.mark.slow
def test_int8_matches_fp32_eager_on_real_music(music: Path) -> None:
    """The accuracy guard: the compiled int8 path against fp32 eager on 72 windows of three
    real tracks the calibration never saw: max |int8 - fp32| <= 0.03, identical top-5 tags on
    at least 95 % of windows."""
    checkpoint = load_checkpoint(DEFAULT)
    stacks = []
    for track in TRACKS:
        samples = torch.from_numpy(decode_audio(music / track, sample_rate=16000).samples)
        windows = split_windows(samples, checkpoint.model.audio.window_samples)
        stacks.append(windows[:: max(1, windows.shape[0] // WINDOWS_PER_TRACK)][:WINDOWS_PER_TRACK])
    windows = torch.cat(stacks)
    assert windows.shape[0] % 8 == 0  # only the largest shape gets compiled
    shipped = Int8Calibration.load(calibration_path(DEFAULT))
    reference = Runtime(
        load_checkpoint(DEFAULT).model, CPU, RuntimeOptions("fp32", False, "off", embeddings=True)
    )
    int8 = Runtime(
        checkpoint.model,
        CPU,
        RuntimeOptions("int8", compile="on", embeddings=True),
        int8_observers=shipped.observers,
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
