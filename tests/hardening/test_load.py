"""Overload of the real service: ten times its measured capacity, open loop.

Requests are 30 s mp3 clips (9 windows), sent at a fixed rate whatever the server answers
(closed-loop clients would slow down and hide the overload). Every request must get an HTTP
answer: 200, or 503 problem details with `Retry-After`. After the load the queue must drain and
`/readyz` answer 200 again, and memory must stay under the bound of the upload tests.

Latency under overload is bounded by admission: at most `max_inflight_requests` tagging
requests are in progress, so an accepted one waits behind at most that many others. For a
latency target, Little's law sizes the bound: capacity (requests/s) x the queueing the target
allows. The long test measures the capacity first and sizes the bound from it; the p99 target
(2 s) is checked there only, in `make hardening`: `make test` asserts no timings.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from pathlib import Path

import httpx
import pytest

from tests.app.audio import encode
from tests.app.servers import ServiceProcess
from tests.hardening.test_uploads import PEAK_RSS_BOUND
from tests.hardening.tools import (
    LoadRun,
    long_only,
    open_loop,
    peak_rss,
    percentile,
    record,
)

CLIP = {"file": ("clip.mp3", encode("mp3", 30.0), "audio/mpeg")}
P99_TARGET_S = 2.0
# Queueing an accepted request may see: the target minus its own service time and some slack.
QUEUEING_S = 1.0


def measure_capacity(
    server: ServiceProcess, seconds: float, clients: int = 4
) -> tuple[float, float]:
    """Requests/s the server completes when kept busy by `clients` back-to-back clients (so
    decoding overlaps the model), and the median latency of one request alone."""
    with httpx.Client(timeout=60) as client:
        alone = []
        for _ in range(3):
            started = time.monotonic()
            assert client.post(f"{server.url}/tag", files=CLIP).status_code == 200
            alone.append(time.monotonic() - started)

    def busy_client() -> int:
        done = 0
        with httpx.Client(timeout=60) as own:
            while time.monotonic() - began < seconds:
                response = own.post(f"{server.url}/tag", files=CLIP)
                assert response.status_code == 200, response.text
                done += 1
        return done

    began = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        completed = sum(pool.map(lambda _: busy_client(), range(clients)))
    return completed / (time.monotonic() - began), percentile(alone, 0.5)


def wait_drained(server: ServiceProcess, since: float, limit_s: float = 60.0) -> float:
    """Seconds from `since` until the queue is empty and /readyz answers 200 again."""
    deadline = time.monotonic() + limit_s
    while True:
        ready = httpx.get(f"{server.url}/readyz", timeout=10).status_code == 200
        if ready and server.metric("tagger_queued_windows") == 0:
            return time.monotonic() - since
        assert time.monotonic() < deadline, "the service never drained"
        time.sleep(0.05)


def check_run(run: LoadRun) -> None:
    """Every request answered: 200, or 503 queue-full with Retry-After."""
    assert not run.unanswered(), run.unanswered()[:5]
    statuses = run.statuses()
    assert set(statuses) <= {"200", "503"}, statuses
    assert statuses.get("200", 0) > 0, statuses
    assert statuses.get("503", 0) > 0, f"no overload: {statuses}"
    refused = [o for o in run.outcomes if o.status == 503]
    assert all(o.retry_after for o in refused)
    assert {o.problem for o in refused} == {"queue-full"}


def summary(run: LoadRun, seconds: float, rate: float) -> dict[str, object]:
    accepted, refused = run.latencies(200), run.latencies(503)
    return {
        "offered_rps": round(rate, 2),
        "seconds": seconds,
        "requests": len(run.outcomes),
        "answers": run.statuses(),
        "accepted_rps": round(len(accepted) / seconds, 2),
        "accepted_p50_s": round(percentile(accepted, 0.5), 3),
        "accepted_p99_s": round(percentile(accepted, 0.99), 3),
        "refused_p50_s": round(percentile(refused, 0.5), 3),
        "refused_p99_s": round(percentile(refused, 0.99), 3),
        "unanswered": len(run.unanswered()),
    }


# The load generator stands in for many clients from one address: it may hold every slot, as
# many clients would (the per-client share is tested in tests/app/service/test_slow_clients.py).
ONE_ADDRESS_MANY_CLIENTS = {"max_client_share": 1.0}


def test_overload_is_answered_and_drains() -> None:
    """Short version for `make test`: one request in progress, 4 s at about 10x capacity."""
    server = ServiceProcess({"max_inflight_requests": 1, **ONE_ADDRESS_MANY_CLIENTS})
    try:
        server.wait_ready()
        run = asyncio.run(open_loop(f"{server.url}/tag", rate=12.0, seconds=4.0, files=CLIP))
        check_run(run)
        wait_drained(server, run.sending_ended)
        assert httpx.post(f"{server.url}/tag", files=CLIP, timeout=60).status_code == 200
        assert peak_rss(server.process.pid) < PEAK_RSS_BOUND
    finally:
        server.stop()


@long_only
def test_ten_times_capacity_for_30_s() -> None:
    probe = ServiceProcess({})
    try:
        probe.wait_ready()
        capacity, service_s = measure_capacity(probe, 15.0)
    finally:
        probe.stop()
    limit = max(1, int(capacity * QUEUEING_S))
    server = ServiceProcess({"max_inflight_requests": limit, **ONE_ADDRESS_MANY_CLIENTS})
    try:
        server.wait_ready()
        seconds, rate = 30.0, 10 * capacity
        run = asyncio.run(open_loop(f"{server.url}/tag", rate=rate, seconds=seconds, files=CLIP))
        drained = wait_drained(server, run.sending_ended)
        peak = peak_rss(server.process.pid)
    finally:
        server.stop()
    figures = summary(run, seconds, rate)
    record(
        "overload",
        capacity_rps=round(capacity, 3),
        service_p50_s=round(service_s, 3),
        max_inflight_requests=limit,
        drained_s=round(drained, 2),
        peak_rss_bytes=peak,
        **figures,
    )
    check_run(run)
    assert float(str(figures["accepted_p99_s"])) < P99_TARGET_S, figures
    assert drained < 5.0
    assert peak < PEAK_RSS_BOUND


@long_only
@pytest.mark.parametrize("compile", ["off", "auto"])
def test_ten_times_capacity_at_the_default_bound(compile: str, tmp_path: Path) -> None:
    """The same overload with the default bound (32 in progress): sized for batching on a GPU,
    it trades latency for throughput on this CPU, but still answers everything and drains.
    Figures only: no latency target applies. With `compile=auto` (the default) and an empty
    compile cache, the first start's build process runs during the overload."""
    settings = {**ONE_ADDRESS_MANY_CLIENTS, "compile": compile}
    settings["compile_cache_dir"] = str(tmp_path / "compiled")
    server = ServiceProcess(settings)
    try:
        server.wait_ready()
        capacity, _ = measure_capacity(server, 10.0)
        seconds, rate = 30.0, 10 * capacity
        run = asyncio.run(open_loop(f"{server.url}/tag", rate=rate, seconds=seconds, files=CLIP))
        drained = wait_drained(server, run.sending_ended)
        peak = peak_rss(server.process.pid)
    finally:
        server.stop()
    record(
        "overload_default" if compile == "off" else "overload_default_compile_auto",
        capacity_rps=round(capacity, 3),
        max_inflight_requests=32,
        drained_s=round(drained, 2),
        peak_rss_bytes=peak,
        **summary(run, seconds, rate),
    )
    check_run(run)
    assert peak < PEAK_RSS_BOUND
