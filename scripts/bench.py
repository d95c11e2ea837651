"""Benchmark the model and the tagging service and print measured figures (`make bench`).

1. Model only, in this process: windows per second of fp32 eager execution and of the fast path
   (`model.runtime.Runtime` with its defaults: bf16 where native, channels-last, compiled) at
   every batch size the batcher forms, side by side; the fast path's share of the measured bf16
   matmul peak of this machine; the parity of the fast path with fp32 eager on real music (when
   `data/music` holds the fetched Debian tracks).
2. Where the time of one 30 s clip goes: decoding, the mel front end, the network.
3. The service end to end: for 30 s clips at each concurrency (default 1, 8 and 32 clients, each
   sending its next request as soon as the last one is answered): requests/s, seconds of audio
   tagged per second and p50/p95/p99 latency, with dynamic batching (`max_batch_windows` 64) and
   with batching off (`max_batch_windows` 1), each beside the model-only ceiling of the same
   runtime at that batch size.

The service runs as `tagger serve` in a subprocess on 127.0.0.1, exactly as deployed, with its
default runtime settings. Without `--checkpoint` an untrained checkpoint of `--preset`
(q2l-small) is written to a temporary directory: speed does not depend on the weights.

    .venv/bin/python scripts/bench.py --checkpoint model/weights/default.safetensors
    .venv/bin/python scripts/bench.py --concurrency 1 8 --torch-threads 2
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import io
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import av
import httpx
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.pipeline.defaults import resolve_threads  # noqa: E402
from model.audio.decode import decode_audio  # noqa: E402
from model.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from model.inference import split_windows, window_starts  # noqa: E402
from model.runtime import Runtime, RuntimeOptions, batch_shapes  # noqa: E402
from model.zoo import build_model  # noqa: E402

MUSIC_TRACKS = [
    "nexuiz-music/brainsukker.ogg",
    "wesnoth-1.16-music/traveling_minstrels.ogg",
    "fretsonfire-songs-muldjord/chaos_god/mix.flac",
]

_RUNNING = re.compile(r"Uvicorn running on http://127\.0\.0\.1:(\d+)")


def make_clip(seconds: float, sample_rate: int = 44100) -> bytes:
    """A stereo MP3 of plucked chords over noise: realistic decode work for a 30 s clip."""
    rng = np.random.default_rng(0)
    n = round(seconds * sample_rate)
    signal = 0.02 * rng.standard_normal(n)
    note = np.arange(2 * sample_rate) / sample_rate
    for start in range(0, n, sample_rate // 2):
        freq = 220.0 * 2 ** (rng.integers(0, 12) / 12)
        tone = np.exp(-4 * note) * sum(np.sin(2 * np.pi * freq * h * note) / h for h in (1, 2, 3))
        length = min(len(note), n - start)
        signal[start : start + length] += tone[:length]
    signal = (0.5 * signal / np.abs(signal).max()).astype(np.float32)
    stereo = np.stack([signal, 0.8 * signal], axis=1).reshape(1, -1)
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp3") as container:
        stream = container.add_stream("libmp3lame", rate=sample_rate, layout="stereo")
        assert isinstance(stream, av.AudioStream)
        frame = av.AudioFrame.from_ndarray(stereo, format="flt", layout="stereo")
        frame.sample_rate = sample_rate
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    return buffer.getvalue()


def throughput(runtime: Runtime, batch_size: int, budget_s: float) -> float:
    """Windows per second of `runtime` called with `batch_size` windows at a time.

    The best of five rounds: a ceiling is what the model can do when nothing else runs, and on a
    shared machine the best round comes closest to that.
    """
    windows = 0.1 * torch.randn(batch_size, runtime.window_samples)
    runtime(windows)  # first call at this shape
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
    model = load_checkpoint(checkpoint).model
    return Runtime(model, torch.device("cpu"), options, max_batch=max_batch)


def matmul_peak_gflops(dtype: torch.dtype, size: int = 2048) -> float:
    """Best GFLOP/s of a square matmul in `dtype` with the current torch threads."""
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(10):
        started = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best / 1e9


def flops_per_window(checkpoint: Path) -> float:
    """Floating-point operations of one window's forward pass (torch's FLOP counter)."""
    from torch.utils.flop_counter import FlopCounterMode

    model = load_checkpoint(checkpoint).model.eval()
    counter = FlopCounterMode(display=False)
    # FlopCounterMode tracks modules with autograd hooks, so gradients stay on here.
    with counter:
        model(torch.zeros(1, model.audio.window_samples))
    return float(counter.get_total_flops())


def parity(checkpoint: Path, fast: Runtime, music: Path) -> tuple[float, float, int] | None:
    """Max abs score difference and top-5 agreement of `fast` against fp32 eager on real music
    windows (24 per track), or None when the tracks are not fetched."""
    paths = [music / track for track in MUSIC_TRACKS]
    if not all(path.exists() for path in paths):
        return None
    stacks = []
    for path in paths:
        audio = decode_audio(path, sample_rate=16000)
        windows = split_windows(torch.from_numpy(audio.samples), fast.window_samples)
        stacks.append(windows[:: max(1, windows.shape[0] // 24)][:24])
    windows = torch.cat(stacks)
    expected, actual = eager_fp32(checkpoint, 8)(windows), fast(windows)
    top_expected = expected.topk(5).indices.sort().values
    top_actual = actual.topk(5).indices.sort().values
    agreement = (top_expected == top_actual).all(dim=1).float().mean().item()
    return (actual - expected).abs().max().item(), agreement, int(windows.shape[0])


def clip_profile(clip: bytes, fast: Runtime, clip_windows: int) -> dict[str, float]:
    """Milliseconds one clip spends in decoding, the mel front end and the fast-path network."""
    timings: dict[str, list[float]] = {"decode": [], "front end": [], "model": []}
    windows = 0.1 * torch.randn(clip_windows, fast.window_samples)
    frontend = fast.model.frontend
    assert isinstance(frontend, torch.nn.Module)
    for _ in range(5):
        started = time.perf_counter()
        decode_audio(clip, sample_rate=16000)
        timings["decode"].append(time.perf_counter() - started)
        with torch.inference_mode():
            started = time.perf_counter()
            frontend(windows)
            timings["front end"].append(time.perf_counter() - started)
        started = time.perf_counter()
        fast(windows)
        timings["model"].append(time.perf_counter() - started)
    return {stage: 1000 * min(values) for stage, values in timings.items()}


def network_profile(fast: Runtime, batch: int) -> str:
    """torch.profiler's top operators for the fast path's precision and layout, run eagerly
    (a compiled graph hides its operators inside generated kernels)."""
    from torch.profiler import ProfilerActivity, profile

    options = dataclasses.replace(fast.options, compile="off")
    eager = Runtime(fast.model, fast.device, options, max_batch=batch)
    windows = 0.1 * torch.randn(batch, fast.window_samples)
    eager(windows)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(3):
            eager(windows)
    table: str = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12)
    return table


@contextmanager
def service(checkpoint: Path, settings: dict[str, object]) -> Iterator[str]:
    """`tagger serve` in a subprocess; yields its base URL once /readyz answers 200."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAGGER_")}
    env.update({f"TAGGER_{k.upper()}": str(v) for k, v in settings.items()})
    env["TAGGER_CHECKPOINT"] = str(checkpoint)
    command = [sys.executable, "-m", "app.cli", "serve", "--port", "0"]
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
    )
    port: list[int] = []
    found = threading.Event()

    def read_logs() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            match = _RUNNING.search(line)
            if match:
                port.append(int(match.group(1)))
                found.set()
        found.set()

    threading.Thread(target=read_logs, daemon=True).start()
    try:
        if not found.wait(120) or not port:
            raise RuntimeError("the service did not start")
        url = f"http://127.0.0.1:{port[0]}"
        deadline = time.monotonic() + 300
        while httpx.get(f"{url}/readyz", timeout=10).status_code != 200:
            if time.monotonic() > deadline:
                raise RuntimeError("the service never became ready")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(30)


@dataclass
class Level:
    mode: str
    concurrency: int
    requests: int
    failures: int
    seconds: float
    latencies: list[float]
    mean_batch: float  # windows per model batch, from the service's metrics
    decode_ms: float  # mean decode time per request, from the service's metrics

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies, q)) * 1000


async def drive(
    url: str, clip: bytes, concurrency: int, total: int
) -> tuple[list[float], int, float]:
    """`concurrency` clients send `total` requests in all.

    Returns:
        Latencies of the successful requests (s), the number of failures, the wall time (s).
    """
    latencies: list[float] = []
    failures = 0
    remaining = total
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as client:

        async def client_loop() -> None:
            nonlocal remaining, failures
            while remaining > 0:
                remaining -= 1
                started = time.perf_counter()
                response = await client.post("/tag", files={"file": ("clip.mp3", clip)})
                if response.status_code == 200:
                    latencies.append(time.perf_counter() - started)
                else:
                    failures += 1

        started = time.perf_counter()
        await asyncio.gather(*(client_loop() for _ in range(concurrency)))
        return latencies, failures, time.perf_counter() - started


def scrape(url: str) -> dict[str, float]:
    """The service's counters this benchmark reads, from /metrics."""
    wanted = (
        "tagger_batch_size_windows_sum",
        "tagger_batch_size_windows_count",
        "tagger_decode_duration_seconds_sum",
        "tagger_decode_duration_seconds_count",
    )
    values = dict.fromkeys(wanted, 0.0)
    for line in httpx.get(f"{url}/metrics", timeout=30).text.splitlines():
        name, _, value = line.partition(" ")
        if name in values:
            values[name] = float(value)
    return values


def measure(url: str, clip: bytes, mode: str, concurrency: int, per_client: int) -> Level:
    # A short warm-up at this concurrency, then the measured run.
    asyncio.run(drive(url, clip, concurrency, concurrency))
    total = max(16, per_client * concurrency)
    before = scrape(url)
    latencies, failures, seconds = asyncio.run(drive(url, clip, concurrency, total))
    after = scrape(url)
    delta = {name: after[name] - before[name] for name in after}
    level = Level(
        mode,
        concurrency,
        len(latencies),
        failures,
        seconds,
        latencies,
        mean_batch=delta["tagger_batch_size_windows_sum"]
        / max(1.0, delta["tagger_batch_size_windows_count"]),
        decode_ms=1000
        * delta["tagger_decode_duration_seconds_sum"]
        / max(1.0, delta["tagger_decode_duration_seconds_count"]),
    )
    p50, p99 = level.percentile(50), level.percentile(99)
    print(
        f"  {mode:12s} c={concurrency:<3d} {level.rps:6.2f} req/s  p50 {p50:7.0f} ms"
        f"  p99 {p99:7.0f} ms  failures {failures}",
        file=sys.stderr,
        flush=True,
    )
    return level


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--checkpoint", type=Path, help="checkpoint to serve (default: untrained)")
    parser.add_argument("--preset", default="q2l-small", help="preset for the untrained checkpoint")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--clip-seconds", type=float, default=30.0)
    parser.add_argument("--max-batch-windows", type=int, default=64)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--torch-threads", type=int, default=0, help="0: the service default")
    parser.add_argument(
        "--max-concurrent-decodes", type=int, default=0, help="0: the service default"
    )
    parser.add_argument("--requests-per-client", type=int, default=4)
    parser.add_argument("--ceiling-seconds", type=float, default=4.0)
    parser.add_argument("--music", type=Path, default=ROOT / "data" / "music")
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    parser.add_argument("--no-service", action="store_true", help="model-only figures only")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        checkpoint = args.checkpoint
        if checkpoint is None:
            checkpoint = save_checkpoint(
                Path(scratch) / f"{args.preset}.safetensors",
                build_model(args.preset).eval(),
                preset=args.preset,
                provenance={"training_data": "none: untrained weights for benchmarking"},
            )
        threads = resolve_threads(args.torch_threads)
        torch.set_num_threads(threads)
        started_at = dt.datetime.now().astimezone()
        load_before = os.getloadavg()
        log = sys.stderr

        # 1. Model only: fp32 eager against the fast path at every batch the batcher forms.
        fast = Runtime(
            load_checkpoint(checkpoint).model,
            torch.device("cpu"),
            RuntimeOptions(),
            max_batch=args.max_batch_windows,
        )
        print(f"fast path: compiling shapes {list(fast.shapes)} ...", file=log, flush=True)
        fast.warm_up()
        info = fast.info()
        print(f"fast path ready in {fast.warmup_seconds:.0f} s: {info}", file=log, flush=True)
        sizes = batch_shapes(args.max_batch_windows)
        eager = eager_fp32(checkpoint, args.max_batch_windows)
        sweep: dict[int, tuple[float, float]] = {}
        for size in sizes:
            sweep[size] = (
                throughput(eager, size, args.ceiling_seconds),
                throughput(fast, size, args.ceiling_seconds),
            )
            print(
                f"batch {size}: fp32 eager {sweep[size][0]:.1f}, fast {sweep[size][1]:.1f} w/s",
                file=log,
                flush=True,
            )
        peaks = {
            "fp32": matmul_peak_gflops(torch.float32),
            "bf16": matmul_peak_gflops(torch.bfloat16),
        }
        flops = flops_per_window(checkpoint)
        agreement = parity(checkpoint, fast, args.music)

        # 2. Where one clip's time goes.
        model = fast.model
        window = model.audio.window_samples
        clip = make_clip(args.clip_seconds)
        clip_windows = len(
            window_starts(round(args.clip_seconds * model.audio.sample_rate), window)
        )
        stages = clip_profile(clip, fast, clip_windows)
        operators = network_profile(fast, min(8, args.max_batch_windows))

        # 3. The service end to end.
        levels: list[Level] = []
        modes = (
            () if args.no_service else (("batching", args.max_batch_windows), ("no batching", 1))
        )
        for mode, batch in modes:
            settings = {
                "max_batch_windows": batch,
                "max_wait_ms": args.max_wait_ms,
                "max_queued_windows": max(1024, batch),
                "torch_threads": threads,
                "request_deadline_s": 3600,
                # Measure the batcher, not the admission bound (which defaults to 32 requests).
                "max_inflight_requests": 4 * max(args.concurrency),
            }
            if args.max_concurrent_decodes:
                settings["max_concurrent_decodes"] = args.max_concurrent_decodes
            with service(checkpoint, settings) as url:
                for concurrency in args.concurrency:
                    levels.append(measure(url, clip, mode, concurrency, args.requests_per_client))
        load_after = os.getloadavg()

    print(f"Measured {started_at:%Y-%m-%d %H:%M %Z} on {os.cpu_count()} cores ({cpu_model()}),")
    print(
        f"torch {torch.__version__}, {threads} torch thread(s), {args.clip_seconds:g} s MP3 clips "
        f"({clip_windows} windows), max_wait_ms {args.max_wait_ms:g}; load average "
        f"{load_before[0]:.1f} before, {load_after[0]:.1f} after.\n"
    )
    print(
        f"Fast path: precision {info.precision}, channels-last {info.channels_last}, "
        f"compiled {info.compiled}{f' ({info.compile_error})' if info.compile_error else ''}, "
        f"shapes {list(info.shapes)}, warm-up {info.warmup_seconds:.0f} s.\n"
    )
    print("Model only, windows per second (best of five rounds):\n")
    print("| batch | fp32 eager | fast path | speed-up | fast path GFLOP/s | of bf16 peak |")
    print("|---|---|---|---|---|---|")
    for size, (slow, quick) in sweep.items():
        gflops = quick * flops / 1e9
        print(
            f"| {size} | {slow:.1f} | {quick:.1f} | {quick / slow:.1f}x | {gflops:.0f} "
            f"| {gflops / peaks['bf16']:.0%} |"
        )
    print(
        f"\nOne window costs {flops / 1e9:.2f} GFLOP; measured matmul peak with {threads} "
        f"thread(s): fp32 {peaks['fp32']:.0f} GFLOP/s, bf16 {peaks['bf16']:.0f} GFLOP/s."
    )
    if agreement is not None:
        max_diff, top5, count = agreement
        print(
            f"Parity on {count} real music windows: max |fast - fp32| = {max_diff:.4f}, "
            f"top-5 tags identical on {top5:.1%} of windows."
        )
    total = sum(stages.values())
    print(
        f"\nWhere one {args.clip_seconds:g} s clip's time goes (best of five, one thread pool):\n"
    )
    print("| stage | ms | share |")
    print("|---|---|---|")
    for stage, ms in stages.items():
        print(f"| {stage} | {ms:.1f} | {ms / total:.0%} |")
    print(f"\nTop operators of the fast path's network, run eagerly:\n\n```\n{operators}```")

    if levels:
        ceilings = {
            "batching": sweep[args.max_batch_windows][1],
            "no batching": sweep[1][1],
        }
        batch_for = {"batching": args.max_batch_windows, "no batching": 1}
        print(
            "\n| mode | max batch | clients | requests | req/s | audio s/s | p50 ms | p95 ms "
            "| p99 ms | model-only req/s | of ceiling | mean batch | decode ms |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for level in levels:
            ceiling_rps = ceilings[level.mode] / clip_windows
            print(
                f"| {level.mode} | {batch_for[level.mode]} | {level.concurrency} "
                f"| {level.requests} | {level.rps:.2f} | {level.rps * args.clip_seconds:.1f} "
                f"| {level.percentile(50):.0f} | {level.percentile(95):.0f} "
                f"| {level.percentile(99):.0f} | {ceiling_rps:.2f} "
                f"| {level.rps / ceiling_rps:.0%} | {level.mean_batch:.1f} "
                f"| {level.decode_ms:.0f} |"
            )

    by_key = {(level.mode, level.concurrency): level for level in levels}
    top = max(args.concurrency)
    print("\nTargets:")
    best_batch = max(sweep, key=lambda size: sweep[size][1])
    print(
        f"- fast path >= 4x fp32 eager model-only throughput: "
        f"{sweep[best_batch][1] / max(v[0] for v in sweep.values()):.1f}x "
        f"(best fast batch {best_batch} against the best fp32 batch)"
    )
    if ("batching", top) in by_key:
        level = by_key[("batching", top)]
        print(
            f"- end to end >= 350x real time at concurrency {top}: "
            f"{level.rps * args.clip_seconds:.0f}x"
        )
        share = level.rps / (sweep[args.max_batch_windows][1] / clip_windows)
        print(f"- >= 80 % of the model-only ceiling at concurrency {top}: {share:.0%}")
    if ("batching", top) in by_key and ("no batching", top) in by_key:
        gain = by_key[("batching", top)].rps / by_key[("no batching", top)].rps
        print(f"- >= 2x the batching-off throughput at concurrency {top}: {gain:.2f}x")
    if ("batching", 1) in by_key:
        p50 = by_key[("batching", 1)].percentile(50)
        print(f"- idle single {args.clip_seconds:g} s request p50 < 250 ms: {p50:.0f} ms")
    failures = sum(level.failures for level in levels)
    if failures:
        print(f"\n{failures} requests failed (not counted above).")

    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "date": started_at.isoformat(),
                    "threads": threads,
                    "clip_windows": clip_windows,
                    "runtime": {**info.__dict__, "shapes": list(info.shapes)},
                    "sweep_windows_per_s": {
                        size: {"fp32_eager": slow, "fast": quick}
                        for size, (slow, quick) in sweep.items()
                    },
                    "flops_per_window": flops,
                    "matmul_peak_gflops": peaks,
                    "parity": agreement,
                    "clip_stages_ms": stages,
                    "load_average": [load_before[0], load_after[0]],
                    "levels": [
                        {
                            "mode": level.mode,
                            "concurrency": level.concurrency,
                            "requests": level.requests,
                            "failures": level.failures,
                            "rps": level.rps,
                            "p50_ms": level.percentile(50),
                            "p95_ms": level.percentile(95),
                            "p99_ms": level.percentile(99),
                            "mean_batch": level.mean_batch,
                            "decode_ms": level.decode_ms,
                        }
                        for level in levels
                    ],
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
