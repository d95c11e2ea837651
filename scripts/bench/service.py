"""The service end to end: `tagger serve` in a subprocess with its default runtime settings,
driven by N clients that each send their next 30 s clip as soon as the last one is answered."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
from common import ROOT

_RUNNING = re.compile(r"Uvicorn running on http://127\.0\.0\.1:(\d+)")


def wait_compiled(url: str, timeout_s: float = 1200) -> dict[str, object]:
    """Wait until the background compilation finished (or failed); returns /model's runtime."""
    deadline = time.monotonic() + timeout_s
    while True:
        runtime: dict[str, object] = httpx.get(f"{url}/model", timeout=30).json()["runtime"]
        if runtime["execution"] != "compiling" or time.monotonic() > deadline:
            return runtime
        time.sleep(2)


# The server process of each running `service()`, by base URL (for `tree_cpu_seconds`).
PIDS: dict[str, int] = {}


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) of `pid` and its live descendants (the decode workers), from
    /proc; what a service spent, whatever else runs on the machine."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        parents[int(entry.name)] = int(fields[1])
        times[int(entry.name)] = (int(fields[11]) + int(fields[12])) / tick
    tree, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        children = [child for child, p in parents.items() if p == parent and child not in tree]
        tree.update(children)
        frontier += children
    return sum(times.get(member, 0.0) for member in tree)


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
        PIDS[url] = process.pid
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
    statuses: dict[int, int] = field(default_factory=dict)  # of the failures: status -> count

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies, q)) * 1000


async def drive(
    url: str, clip: bytes, name: str, concurrency: int, total: int
) -> tuple[list[float], dict[int, int], float]:
    """`concurrency` clients send `total` requests in all.

    Returns:
        Latencies of the successful requests (s), the failures by status code, the wall time
        (s).
    """
    latencies: list[float] = []
    failures: dict[int, int] = {}
    remaining = total
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as client:

        async def client_loop() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                started = time.perf_counter()
                response = await client.post("/tag", files={"file": (name, clip)})
                if response.status_code == 200:
                    latencies.append(time.perf_counter() - started)
                else:
                    failures[response.status_code] = failures.get(response.status_code, 0) + 1

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
    """`mode` is the clip's format; a short warm-up at this concurrency, then the run."""
    name = f"clip.{mode}"
    asyncio.run(drive(url, clip, name, concurrency, concurrency))
    total = max(16, per_client * concurrency)
    before = scrape(url)
    latencies, statuses, seconds = asyncio.run(drive(url, clip, name, concurrency, total))
    failures = sum(statuses.values())
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
        statuses=statuses,
    )
    p50, p99 = level.percentile(50), level.percentile(99)
    print(
        f"  {mode:12s} c={concurrency:<3d} {level.rps:6.2f} req/s  p50 {p50:7.0f} ms"
        f"  p99 {p99:7.0f} ms  failures {failures} {statuses or ''}",
        file=sys.stderr,
        flush=True,
    )
    return level
