"""Calibrate a checkpoint's int8 path on real music and write its sidecar (`NAME.int8.safetensors`).

Steps, all in this process with one torch thread:

1. Calibration windows: up to `--windows-per-track` windows, evenly spread, from every track of
   `--packages` in `data/music` (fetched Debian soundtracks; the reserved packages are refused,
   and the three tracks the accuracy test uses are left out so that the test sees other music).
2. torchao's PT2E flow observes the activation ranges of the model's convolutions on them.
   Modules named by `--fp32-modules` are not quantised (the v2 default model keeps its first
   residual block and its head in fp32: see docs/performance.md).
3. The checkpoint's own accuracy check: the compiled int8 runtime against fp32 eager on the same
   windows (max |int8 - fp32| <= 0.03, identical top-5 on >= 95 % of windows).
4. Speed: compiled int8 against the compiled bf16 fast path (fp32 where bf16 is not native) at
   batch 8, best of five rounds each, in this run.

The service and `tagger tag` read the sidecar at start-up and use int8 under `precision=auto`
only where the CPU has int8 dot products, the check passed and int8 measured faster.

    .venv/bin/python scripts/calibrate_int8.py --checkpoint model/weights/default.safetensors
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from model.audio.decode import decode_audio  # noqa: E402
from model.checkpoint import load_checkpoint  # noqa: E402
from model.inference import split_windows  # noqa: E402
from model.quantize import (  # noqa: E402
    CalibrationError,
    Int8Calibration,
    Int8Recipe,
    SpeedCheck,
    accuracy_check,
    calibrate_observers,
    calibration_path,
    cpu_int8_flags,
    describe_calibration,
)
from model.runtime import Runtime, RuntimeOptions, resolve_precision  # noqa: E402
from training.fetch_music import RESERVED_PACKAGES  # noqa: E402

TEST_TRACKS = {  # tests/model/test_quantize.py checks int8 on these; calibration leaves them out
    "nexuiz-music/brainsukker.ogg",
    "wesnoth-1.16-music/traveling_minstrels.ogg",
    "fretsonfire-songs-muldjord/chaos_god/mix.flac",
}
DEFAULT_PACKAGES = ["wesnoth-1.16-music", "nexuiz-music", "asc-music", "supertux-data"]


def calibration_windows(
    music: Path, packages: list[str], per_track: int, window: int, max_tracks: int
) -> tuple[torch.Tensor, list[str]]:
    """Windows of real music from the fetched packages, and the tracks they came from."""
    reserved = RESERVED_PACKAGES.intersection(packages)
    if reserved:
        raise SystemExit(f"reserved packages may not be used for calibration: {sorted(reserved)}")
    tracks: list[str] = []
    for line in (music / "manifest.jsonl").read_text().splitlines():
        entry = json.loads(line)
        if entry["package"] in packages and entry["local_path"] not in TEST_TRACKS:
            tracks.append(entry["local_path"])
    # Round-robin over packages so every package is represented within max_tracks.
    by_package = {p: [t for t in tracks if t.startswith(p + "/")] for p in packages}
    chosen: list[str] = []
    while len(chosen) < max_tracks and any(by_package.values()):
        for package in packages:
            if by_package[package] and len(chosen) < max_tracks:
                chosen.append(by_package[package].pop(0))
    stacks = []
    for track in chosen:
        samples = torch.from_numpy(decode_audio(music / track, sample_rate=16000).samples)
        windows = split_windows(samples, window)
        stacks.append(windows[:: max(1, windows.shape[0] // per_track)][:per_track])
    if not stacks:
        raise SystemExit(f"no tracks of {packages} in {music}: run `make music` first")
    windows = torch.cat(stacks)
    return windows[: windows.shape[0] // 8 * 8], chosen  # whole calibration batches of 8


def throughput(runtime: Runtime, windows: torch.Tensor) -> float:
    """Best of five rounds of about a second each, windows per second."""
    runtime(windows)
    best = 0.0
    for _ in range(5):
        passes, started = 0, time.perf_counter()
        while passes < 1 or time.perf_counter() - started < 1.0:
            runtime(windows)
            passes += 1
        best = max(best, passes * windows.shape[0] / (time.perf_counter() - started))
    return best


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--checkpoint", type=Path, default=ROOT / "model/weights/default.safetensors"
    )
    parser.add_argument("--music", type=Path, default=ROOT / "data" / "music")
    parser.add_argument("--packages", nargs="+", default=DEFAULT_PACKAGES)
    parser.add_argument("--windows-per-track", type=int, default=8)
    parser.add_argument("--max-tracks", type=int, default=24)
    parser.add_argument("--batch", type=int, default=8, help="batch of the speed comparison")
    parser.add_argument(
        "--fp32-modules",
        nargs="*",
        default=[],
        metavar="NAME",
        help="modules left in fp32: head, backbone.blocks.N (or deeper); see model.quantize",
    )
    parser.add_argument("--out", type=Path, help="default: NAME.int8.safetensors beside it")
    args = parser.parse_args()
    torch.set_num_threads(1)
    log = sys.stderr

    checkpoint = load_checkpoint(args.checkpoint)
    window = checkpoint.model.audio.window_samples
    windows, tracks = calibration_windows(
        args.music, args.packages, args.windows_per_track, window, args.max_tracks
    )
    print(f"{windows.shape[0]} calibration windows from {len(tracks)} tracks", file=log)
    started = time.monotonic()
    fp32_modules = tuple(args.fp32_modules)
    try:
        observers = calibrate_observers(checkpoint.model, windows, fp32_modules=fp32_modules)
    except CalibrationError as error:
        raise SystemExit(f"calibrate_int8: {error}") from error
    print(f"observed activation ranges in {time.monotonic() - started:.0f} s", file=log)

    cpu = torch.device("cpu")
    options = RuntimeOptions(precision="int8", compile="on")
    int8 = Runtime(
        load_checkpoint(args.checkpoint).model,
        cpu,
        options,
        max_batch=args.batch,
        int8_recipe=Int8Recipe(observers, fp32_modules),
    )
    int8.warm_up()
    eager = Runtime(
        load_checkpoint(args.checkpoint).model,
        cpu,
        RuntimeOptions(precision="fp32", channels_last=False, compile="off"),
        max_batch=args.batch,
    )
    check = accuracy_check(eager(windows), int8(windows))
    print(f"accuracy: {check.describe()}: {'passed' if check.passed else 'FAILED'}", file=log)

    reference = "bf16" if resolve_precision("auto", cpu) is not None else "fp32"
    fast = Runtime(
        load_checkpoint(args.checkpoint).model, cpu, RuntimeOptions(), max_batch=args.batch
    )
    fast.warm_up()
    batch = windows[: args.batch]
    speed = SpeedCheck(
        batch=args.batch,
        int8_windows_per_s=throughput(int8, batch),
        reference=reference,
        reference_windows_per_s=throughput(fast, batch),
        cpu=cpu_name(),
        int8_flags=cpu_int8_flags(),
    )
    if not speed.on_int8_hardware:
        print(
            "this CPU has no int8 dot products: the speed is recorded, but `precision=auto` "
            "will not use int8 on its strength; calibrate on a CPU with avx512_vnni, avx_vnni "
            "or amx_int8 for that",
            file=log,
        )
    packages = sorted({track.split("/", 1)[0] for track in tracks})
    calibration = Int8Calibration(
        checkpoint_sha256=checkpoint.sha256,
        observers=observers,
        check=check,
        speed=speed,
        source=f"{windows.shape[0]} windows of {len(tracks)} tracks from Debian packages "
        f"{', '.join(packages)}",
        fp32_modules=fp32_modules,
    )
    out = calibration.save(args.out or calibration_path(args.checkpoint))
    print(json.dumps(describe_calibration(calibration), indent=2))
    print(f"wrote {out}", file=log)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
