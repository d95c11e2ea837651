"""The fast inference path: choices per device, chunking, and accuracy parity with fp32 eager."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from model.audio.decode import decode_audio
from model.checkpoint import load_checkpoint
from model.inference import split_windows
from model.runtime import (
    CPU_MAX_CHUNK,
    Runtime,
    RuntimeOptions,
    auto_precision,
    batch_shapes,
    resolve_device,
    resolve_precision,
    split_sizes,
)
from model.zoo import build_model

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = ROOT / "model" / "weights" / "default.safetensors"
CPU = torch.device("cpu")
TRACKS = [
    "nexuiz-music/brainsukker.ogg",
    "wesnoth-1.16-music/traveling_minstrels.ogg",
    "fretsonfire-songs-muldjord/chaos_god/mix.flac",
]
WINDOWS_PER_TRACK = 24


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"precision": "fp8"}, "precision"),
        ({"compile": "maybe"}, "compile"),
        ({"max_chunk": -1}, "max_chunk"),
    ],
)
def test_bad_options_are_refused(options: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RuntimeOptions(**options)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("device_type", "cuda_bf16", "cpu_bf16", "cpu_autocast", "expected"),
    [
        ("cuda", True, False, True, torch.bfloat16),
        ("cuda", False, False, True, torch.float16),
        ("cuda", True, True, False, torch.bfloat16),
        ("cpu", False, True, True, torch.bfloat16),
        ("cpu", False, False, True, None),
        ("cpu", False, True, False, None),
        ("mps", True, True, True, None),
    ],
)
def test_auto_precision_is_a_rule_of_the_hardware(
    device_type: str,
    cuda_bf16: bool,
    cpu_bf16: bool,
    cpu_autocast: bool,
    expected: torch.dtype | None,
) -> None:
    chosen = auto_precision(
        device_type, cuda_bf16=cuda_bf16, cpu_bf16=cpu_bf16, cpu_autocast=cpu_autocast
    )
    assert chosen is expected


@pytest.mark.parametrize("native", [True, False])
def test_auto_on_a_cpu_asks_the_cpu_for_native_bf16(
    native: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Both capability probes report the same answer, so "auto" sees a CPU with or without bf16.
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: native)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: native)
    assert resolve_precision("auto", CPU) is (torch.bfloat16 if native else None)
    assert resolve_precision("auto", CPU, cpu_autocast=False) is None


def test_forced_precision_is_obeyed() -> None:
    assert resolve_precision("fp32", CPU) is None
    assert resolve_precision("bf16", CPU) is torch.bfloat16
    assert resolve_precision("fp16", CPU) is torch.float16
    with pytest.raises(ValueError, match="precision"):
        resolve_precision("fp8", CPU)


def test_device_rule() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("cpu", local_rank=3) == torch.device("cpu")
    if not torch.cuda.is_available():
        assert resolve_device("auto") == torch.device("cpu")
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            resolve_device("cuda")


def test_shapes_are_capped_on_cpu_and_chunks_cover_any_count() -> None:
    assert batch_shapes(8) == (1, 2, 4, 8)
    assert batch_shapes(48) == (1, 2, 4, 8, 16, 32, 48)
    assert split_sizes(47, batch_shapes(48)) == [32, 8, 4, 2, 1]
    with pytest.raises(ValueError, match="positive"):
        batch_shapes(0)
    model = build_model("q2l-small")
    off = RuntimeOptions(compile="off")
    assert Runtime(model, CPU, off, max_batch=64).shapes == batch_shapes(CPU_MAX_CHUNK)
    assert Runtime(model, CPU, off, max_batch=4).shapes == (1, 2, 4)
    wide = RuntimeOptions(compile="off", max_chunk=16)
    assert Runtime(model, CPU, wide, max_batch=64).shapes == (1, 2, 4, 8, 16)


def test_any_number_of_windows_comes_back_in_order_as_float32() -> None:
    torch.manual_seed(0)
    model = build_model("q2l-small").eval()
    reference = Runtime(build_model("q2l-small"), CPU, RuntimeOptions("fp32", False, "off"))
    reference.model.load_state_dict(model.state_dict())
    fast = Runtime(model, CPU, RuntimeOptions("fp32", True, "off"))
    windows = 0.1 * torch.randn(11, model.audio.window_samples)  # chunks 8 + 2 + 1
    scores = fast(windows)
    assert scores.shape == (11, model.n_classes)
    assert scores.dtype == torch.float32
    torch.testing.assert_close(scores, reference(windows), atol=1e-4, rtol=0)
    assert fast(windows[:0]).shape == (0, model.n_classes)
    with pytest.raises(ValueError, match="expected windows"):
        fast(windows[:, :100])


def test_compile_auto_falls_back_to_eager_when_compilation_fails() -> None:
    import torch._inductor.config as inductor_config

    model = build_model("q2l-small")
    with inductor_config.patch({"cpp.cxx": (None, "/nonexistent/c++")}):
        auto = Runtime(model, CPU, RuntimeOptions(compile="auto", max_chunk=1))
        auto.warm_up()
        forced = Runtime(build_model("q2l-small"), CPU, RuntimeOptions(compile="on", max_chunk=1))
        with pytest.raises(Exception, match=r"(?i)c\+\+|compil"):
            forced.warm_up()
    info = auto.info()
    assert not info.compiled
    assert info.compile_error
    assert info.warmup_seconds is not None
    assert auto(torch.zeros(1, model.audio.window_samples)).shape == (1, model.n_classes)


def _real_windows(music: Path, window: int) -> torch.Tensor:
    stacks = []
    for track in TRACKS:
        audio = decode_audio(music / track, sample_rate=16000)
        windows = split_windows(torch.from_numpy(audio.samples), window)
        step = max(1, windows.shape[0] // WINDOWS_PER_TRACK)
        stacks.append(windows[::step][:WINDOWS_PER_TRACK])
    return torch.cat(stacks)


def test_fast_path_matches_fp32_eager_on_real_music(music: Path) -> None:
    """The service's default path (auto precision, channels-last, compiled) against fp32 eager:
    scores within 0.02 and the same top-5 tags on at least 95 % of real music windows."""
    checkpoint = load_checkpoint(DEFAULT)
    windows = _real_windows(music, checkpoint.model.audio.window_samples)
    assert windows.shape[0] % CPU_MAX_CHUNK == 0  # only the largest shape gets compiled
    reference = Runtime(load_checkpoint(DEFAULT).model, CPU, RuntimeOptions("fp32", False, "off"))
    fast = Runtime(checkpoint.model, CPU, RuntimeOptions(compile="on"))

    expected, actual = reference(windows), fast(windows)

    assert fast.info().compiled
    assert (actual - expected).abs().max().item() <= 0.02
    top_expected = expected.topk(5).indices.sort().values
    top_actual = actual.topk(5).indices.sort().values
    agreement = (top_expected == top_actual).all(dim=1).float().mean().item()
    assert agreement >= 0.95, agreement
