"""Model only, in this process: windows per second of fp32 eager, the bf16 fast path and int8
at every batch size, each path's share of its own matmul peak measured in the same run, the
parity of both fast paths with fp32 eager on real music, and where one clip's time goes."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from common import CLIP_TRACKS, MUSIC, say

from model.audio.decode import decode_audio
from model.checkpoint import load_checkpoint
from model.inference import split_windows
from model.quantize import Int8Calibration, accuracy_check, calibration_path, cpu_int8_flags
from model.runtime import Runtime, RuntimeOptions, batch_shapes, cpu_has_native_bf16

CPU = torch.device("cpu")


def throughput(runtime: Runtime, batch_size: int, budget_s: float) -> float:
    """Windows per second at `batch_size`, best of five rounds (the closest to a ceiling on a
    shared machine)."""
    windows = 0.1 * torch.randn(batch_size, runtime.window_samples)
    runtime(windows)
    best = 0.0
    for _ in range(5):
        passes, started = 0, time.perf_counter()
        while passes < 1 or time.perf_counter() - started < budget_s / 5:
            runtime(windows)
            passes += 1
        best = max(best, passes * batch_size / (time.perf_counter() - started))
    return best


def eager_fp32(checkpoint: Path, max_batch: int) -> Runtime:
    """The plain baseline: fp32, default memory format, no compilation, whole batches."""
    options = RuntimeOptions(
        precision="fp32", channels_last=False, compile="off", max_chunk=max_batch
    )
    return Runtime(load_checkpoint(checkpoint).model, CPU, options, max_batch=max_batch)


def matmul_peak(dtype: torch.dtype, size: int = 2048) -> float:
    """Best GFLOP/s (GOP/s for int8, through torch._int_mm's oneDNN/VNNI kernel) of a square
    matmul with the current torch threads."""
    if dtype == torch.int8:
        a = torch.randint(-128, 127, (size, size), dtype=torch.int8)
        b = torch.randint(-128, 127, (size, size), dtype=torch.int8)

        def run() -> None:
            torch._int_mm(a, b)

    else:
        x, y = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)

        def run() -> None:
            x @ y

    run()
    best = float("inf")
    for _ in range(10):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best / 1e9


def flops_per_window(checkpoint: Path) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    model = load_checkpoint(checkpoint).model.eval()
    counter = FlopCounterMode(display=False)
    with counter:
        model(torch.zeros(1, model.audio.window_samples))
    return float(counter.get_total_flops())


def real_windows(window: int, per_track: int = 24) -> torch.Tensor | None:
    paths = [MUSIC / track for track in CLIP_TRACKS]
    if not all(path.exists() for path in paths):
        return None
    stacks = []
    for path in paths:
        windows = split_windows(
            torch.from_numpy(decode_audio(path, sample_rate=16000).samples), window
        )
        stacks.append(windows[:: max(1, windows.shape[0] // per_track)][:per_track])
    return torch.cat(stacks)


@dataclass
class ModelFigures:
    sweep: dict[int, dict[str, float]]  # batch -> path -> windows/s
    peaks: dict[str, float]
    flops: float
    parity: dict[str, tuple[float, float, int]]
    bf16_info: dict[str, object]
    int8_info: dict[str, object] | None
    int8_reason: str


def measure_model(
    checkpoint: Path, max_batch: int, budget_s: float
) -> tuple[ModelFigures, Runtime]:
    fast = Runtime(load_checkpoint(checkpoint).model, CPU, RuntimeOptions(), max_batch=max_batch)
    say(f"bf16 fast path: compiling shapes {list(fast.shapes)} ...")
    fast.warm_up()
    int8: Runtime | None = None
    sidecar = calibration_path(checkpoint)
    reason = f"no calibration {sidecar.name}"
    if sidecar.exists():
        calibration = Int8Calibration.load(sidecar)
        reason = calibration.check.describe()
        int8 = Runtime(
            load_checkpoint(checkpoint).model,
            CPU,
            RuntimeOptions(precision="int8", compile="on"),
            max_batch=max_batch,
            int8_recipe=calibration.recipe,
        )
        say(f"int8: compiling shapes {list(int8.shapes)} ...")
        int8.warm_up()
    eager = eager_fp32(checkpoint, max_batch)
    sweep: dict[int, dict[str, float]] = {}
    for size in batch_shapes(max_batch):
        sweep[size] = {
            "fp32": throughput(eager, size, budget_s),
            "bf16": throughput(fast, size, budget_s),
        }
        if int8 is not None:
            sweep[size]["int8"] = throughput(int8, size, budget_s)
        say(
            f"batch {size}: "
            + ", ".join(f"{k} {v:.1f}" for k, v in sweep[size].items())
            + " windows/s"
        )
    # Without native bf16 or int8 dot products those matmuls run reference loops (under
    # 1 GOP/s on a Zen 2 core, minutes per peak): no peak to speak of, so none is measured.
    native = {
        "fp32": True,
        "bf16": cpu_has_native_bf16(),
        "int8": bool(cpu_int8_flags()),
    }
    peaks = {
        name: matmul_peak(dtype)
        for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16), ("int8", torch.int8))
        if native[name]
    }
    parity: dict[str, tuple[float, float, int]] = {}
    windows = real_windows(fast.window_samples)
    if windows is not None:
        expected = eager_fp32(checkpoint, 8)(windows)
        for name, runtime in (("bf16", fast), ("int8", int8)):
            if runtime is not None:
                check = accuracy_check(expected, runtime(windows))
                parity[name] = (check.max_abs_diff, check.top5_agreement, check.windows)
    figures = ModelFigures(
        sweep=sweep,
        peaks=peaks,
        flops=flops_per_window(checkpoint),
        parity=parity,
        bf16_info=dataclasses.asdict(fast.info()),
        int8_info=dataclasses.asdict(int8.info()) if int8 else None,
        int8_reason=reason,
    )
    return figures, fast


def report(figures: ModelFigures) -> list[str]:
    paths = [p for p in ("fp32", "bf16", "int8") if p in next(iter(figures.sweep.values()))]
    # The "bf16" path is the default fast path: compiled fp32 where the CPU lacks native bf16.
    fast = str(figures.bf16_info.get("precision", "bf16"))
    names = {"fp32": "fp32 eager", "bf16": f"fast path ({fast})", "int8": "int8"}
    lines = ["Model only, windows per second (best of five rounds):", ""]

    def share(windows_per_s: float, path: str) -> str:
        peak = figures.peaks.get(path)
        return f"{windows_per_s * figures.flops / 1e9 / peak:.0%}" if peak else "n/a"

    header = "| batch | " + " | ".join(names[p] for p in paths) + " |"
    if "int8" in paths:
        header += f" int8 / fast | fast of {fast} peak | int8 of int8 peak |"
    lines += [header, "|" + "---|" * (header.count("|") - 1)]
    for size, row in figures.sweep.items():
        line = f"| {size} | " + " | ".join(f"{row[p]:.1f}" for p in paths) + " |"
        if "int8" in row:
            line += (
                f" {row['int8'] / row['bf16']:.2f}x | {share(row['bf16'], fast)} | "
                f"{share(row['int8'], 'int8')} |"
            )
        lines.append(line)
    lines.append("")
    peaks = ", ".join(
        f"{name} {figures.peaks[name]:.0f} {unit}" if name in figures.peaks else f"{name} {why}"
        for name, unit, why in (
            ("fp32", "GFLOP/s", ""),
            ("bf16", "GFLOP/s", "not native (not measured)"),
            ("int8", "GOP/s (torch._int_mm)", "no int8 dot products (not measured)"),
        )
    )
    lines.append(
        f"One window costs {figures.flops / 1e9:.2f} GFLOP. Matmul peaks in this run: {peaks}."
    )
    for name, (diff, top5, count) in figures.parity.items():
        shown = fast if name == "bf16" else name
        lines.append(
            f"Parity of {shown} on {count} real music windows: max |{shown} - fp32 eager| = "
            f"{diff:.4f}, top-5 identical on {top5:.1%}."
        )
    best = {p: max(row[p] for row in figures.sweep.values()) for p in paths}
    if "int8" in best:
        lines.append(
            f"Best batch against best batch: int8 {best['int8']:.1f}, fast path ({fast}) "
            f"{best['bf16']:.1f}, fp32 eager {best['fp32']:.1f} windows/s: "
            f"int8 {best['int8'] / best['bf16']:.2f}x the fast path (target 1.8x bf16)."
        )
    lines.append(f"int8: {figures.int8_reason}.")
    return lines
