"""Time the service's first and second start, and the compiled graphs against eager ones.
Prints the figures of docs/performance.md ("First start").

    .venv/bin/python scripts/first_start.py                 # the bundled default model
    .venv/bin/python scripts/first_start.py --checkpoint path/to/model.safetensors

1. Cold start: the server runs as `make serve` runs it (`TAGGER_COMPILE=auto`) with an empty
   compile cache: seconds to ready, to the first tagged 30 s clip (eager), and to the switch
   to the compiled graphs a child process builds meanwhile.
2. Warm start: the same server again, the cache now holding the artifact: seconds to ready,
   and whether it runs compiled graphs from the start.
3. Model only, in this process: windows/s of the compiled artifact against the eager path of
   the same precision, at batch 1 and 8, interleaved in rounds so a noisy machine hurts both.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.pipeline.defaults import default_checkpoint_path  # noqa: E402
from model.checkpoint import load_checkpoint  # noqa: E402
from model.compiled import CompileCache, cpu_isa  # noqa: E402
from model.runtime import Runtime, RuntimeOptions  # noqa: E402
from tests.app.audio import encode  # noqa: E402
from tests.app.servers import ServiceProcess  # noqa: E402


def runtime_of(server: ServiceProcess) -> dict[str, object]:
    info: dict[str, object] = httpx.get(f"{server.url}/model", timeout=10).json()["runtime"]
    return info


def start(settings: dict[str, object], compile_timeout: float) -> dict[str, object]:
    started = time.monotonic()
    server = ServiceProcess(settings)
    try:
        server.wait_ready(timeout=600)
        ready = time.monotonic() - started
        at_ready = runtime_of(server)
        files = {"file": ("clip.mp3", encode("mp3", 30.0), "audio/mpeg")}
        httpx.post(f"{server.url}/tag", files=files, timeout=120).raise_for_status()
        first_tag = time.monotonic() - started
        deadline = time.monotonic() + compile_timeout
        runtime = runtime_of(server)
        while runtime["execution"] == "compiling" and time.monotonic() < deadline:
            time.sleep(1)
            runtime = runtime_of(server)
        compiled = time.monotonic() - started
    finally:
        server.stop()
    return {
        "ready": ready,
        "execution_at_ready": at_ready["execution"],
        "first_tag": first_tag,
        "compiled": compiled,
        "runtime": runtime,
    }


def windows_per_second(runtime: Runtime, batch: int, seconds: float) -> float:
    windows = 0.1 * torch.randn(batch, runtime.window_samples)
    runtime(windows)
    done, started = 0, time.monotonic()
    while time.monotonic() - started < seconds:
        runtime(windows)
        done += batch
    return done / (time.monotonic() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=default_checkpoint_path())
    parser.add_argument("--compile-timeout", type=float, default=1800.0)
    parser.add_argument("--rounds", type=int, default=5, help="model-only rounds per path")
    parser.add_argument("--threads", type=int, default=2, help="torch threads, model only")
    args = parser.parse_args()
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    with tempfile.TemporaryDirectory(prefix="compile-cache-") as cache:
        settings: dict[str, object] = {
            "compile": "auto",
            "checkpoint": str(args.checkpoint),
            "compile_cache_dir": cache,
        }
        cold = start(settings, args.compile_timeout)
        warm = start(settings, args.compile_timeout)

        torch.set_num_threads(args.threads)
        options = RuntimeOptions(compile="on", embeddings=True)
        compiled = Runtime(
            load_checkpoint(args.checkpoint).model, torch.device("cpu"), options,
            cache=CompileCache(Path(cache)),
        )  # fmt: skip
        compiled.warm_up()  # found in the cache the servers filled
        eager_options = RuntimeOptions(compile="off", embeddings=True)
        eager = Runtime(load_checkpoint(args.checkpoint).model, torch.device("cpu"), eager_options)
        speeds: dict[tuple[str, int], list[float]] = {}
        for _ in range(args.rounds):
            for batch in (1, 8):
                for name, runtime in (("compiled", compiled), ("eager", eager)):
                    speed = windows_per_second(runtime, batch, 3.0)
                    speeds.setdefault((name, batch), []).append(speed)

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or platform.machine(),
    )
    print(
        f"date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; {os.cpu_count()} cores, {cpu} "
        f"({' '.join(cpu_isa())}); torch {torch.__version__}; load average before: {load}"
    )
    print(f"checkpoint: {args.checkpoint.name}; compiled artifact: {compiled.info().artifact}")
    print("cold start (empty compile cache):")
    print(f"  ready (GET /readyz 200):     {cold['ready']:7.1f} s ({cold['execution_at_ready']})")
    print(f"  first 30 s mp3 tagged:       {cold['first_tag']:7.1f} s")
    runtime = cold["runtime"]
    assert isinstance(runtime, dict)
    print(
        f"  execution {runtime.get('execution')}:        {cold['compiled']:7.1f} s "
        f"(build process {runtime.get('compile_seconds')} s, error {runtime.get('compile_error')})"
    )
    print("warm start (the artifact in the cache):")
    print(f"  ready (GET /readyz 200):     {warm['ready']:7.1f} s ({warm['execution_at_ready']})")
    print(f"  first 30 s mp3 tagged:       {warm['first_tag']:7.1f} s")
    print(
        f"model only, {args.threads} threads, {compiled.info().precision}, median of "
        f"{args.rounds} interleaved rounds of 3 s:"
    )
    for batch in (1, 8):
        fast = statistics.median(speeds[("compiled", batch)])
        slow = statistics.median(speeds[("eager", batch)])
        print(
            f"  batch {batch}: compiled {fast:6.1f} windows/s, eager {slow:6.1f} windows/s "
            f"({fast / slow:.2f}x)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
