"""SIGTERM while the real service is under load: `/readyz` turns unready first, in-flight
requests finish, requests still queued at the shutdown timeout are answered 503, and the
process exits 0. No request is dropped without an HTTP answer."""

from __future__ import annotations

import asyncio
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.app.audio import wav_pcm16
from tests.app.servers import ServiceProcess
from tests.hardening.tools import Outcome, long_only, problem_type, record

CLIP = {"file": ("clip.wav", wav_pcm16(10.0), "audio/wav")}  # 3 windows


@dataclass
class Probe:
    at: float  # sent
    done: float  # answered, or failed
    status: int | None  # None: the connection was refused (listener closed)
    detail: str = ""


async def _wait_exit(server: ServiceProcess, limit_s: float) -> int:
    return await asyncio.to_thread(server.process.wait, limit_s)


@pytest.mark.parametrize("compile", ["off", pytest.param("auto", marks=long_only)])
def test_sigterm_under_load_drains_finishes_in_flight_and_exits_0(
    compile: str, tmp_path: Path
) -> None:
    """With `compile=auto` (the default) and an empty compile cache, the signal comes while
    the build process runs: it is ended with the service."""
    drain = 1.5
    server = ServiceProcess(
        {
            "shutdown_drain_s": drain,
            "shutdown_timeout_s": 10,
            "compile": compile,
            "compile_cache_dir": str(tmp_path / "compiled"),
        }
    )
    try:
        server.wait_ready()
        outcomes, probes, sigterm_at, code = asyncio.run(_drive(server, drain))
    finally:
        server.stop()

    assert code == 0
    unanswered = [o for o in outcomes if o.status is None]
    assert not unanswered, unanswered[:5]
    assert {o.status for o in outcomes} == {200}
    in_flight = [o for o in outcomes if o.started < sigterm_at < o.started + o.seconds]
    after = [o for o in outcomes if o.started >= sigterm_at]
    assert in_flight, "no request was in flight at SIGTERM: the test proved nothing"

    # The readiness probe saw "shutting down" before the listener went away. (A probe sent
    # just before the signal may be answered after it: probes are judged by their answer time.)
    before = [p for p in probes if p.done < sigterm_at]
    assert before
    assert all(p.status == 200 for p in before)
    first_unready = next(p for p in probes if p.status != 200)
    assert first_unready.status == 503
    assert "shutting down" in first_unready.detail
    assert first_unready.done - sigterm_at < drain
    refused = [p for p in probes if p.status is None]
    if refused:
        assert refused[0].at - sigterm_at >= drain * 0.9
    record(
        "sigterm" if compile == "off" else "sigterm_compile_auto",
        drain_s=drain,
        requests=len(outcomes),
        in_flight_at_sigterm=len(in_flight),
        sent_after_sigterm=len(after),
        unanswered=len(unanswered),
        unready_after_s=round(first_unready.done - sigterm_at, 3),
        exit_code=code,
    )


async def _drive(
    server: ServiceProcess, drain: float
) -> tuple[list[Outcome], list[Probe], float, int]:
    outcomes: list[Outcome] = []
    probes: list[Probe] = []
    balancer_removed = asyncio.Event()  # what a load balancer does when /readyz fails
    sigterm_at = float("inf")

    async with httpx.AsyncClient(timeout=60) as client:

        async def worker() -> None:
            while not balancer_removed.is_set():
                started = time.monotonic()
                try:
                    response = await client.post(f"{server.url}/tag", files=CLIP)
                    outcomes.append(
                        Outcome(started, time.monotonic() - started, response.status_code)
                    )
                except httpx.TransportError as error:
                    outcomes.append(
                        Outcome(started, time.monotonic() - started, None, error=repr(error))
                    )

        async def prober() -> None:
            async with httpx.AsyncClient(timeout=5) as probe_client:
                while server.process.poll() is None:
                    at = time.monotonic()
                    try:
                        response = await probe_client.get(f"{server.url}/readyz")
                        detail = (
                            response.json().get("detail", "") if response.status_code != 200 else ""
                        )
                        probes.append(Probe(at, time.monotonic(), response.status_code, detail))
                        if response.status_code != 200:
                            balancer_removed.set()
                    except httpx.TransportError:
                        probes.append(Probe(at, time.monotonic(), None))
                        balancer_removed.set()
                    await asyncio.sleep(0.05)

        workers = [asyncio.create_task(worker()) for _ in range(6)]
        probing = asyncio.create_task(prober())
        await asyncio.sleep(3.0)
        sigterm_at = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        code = await _wait_exit(server, 60)
        await asyncio.gather(*workers)
        await probing
    return outcomes, probes, sigterm_at, code


def test_requests_still_queued_at_the_shutdown_timeout_are_answered_503() -> None:
    # One window per batch and 24 windows per request: the queue holds many seconds of work,
    # far more than the 1 s the shutdown allows.
    server = ServiceProcess(
        {
            "max_batch_windows": 1,
            "max_wait_ms": 0,
            "max_queued_windows": 400,
            "max_request_queued_windows": 24,
            "shutdown_drain_s": 0,
            "shutdown_timeout_s": 1.0,
            "torch_threads": 1,
        }
    )
    clip = {"file": ("long.wav", wav_pcm16(88.0), "audio/wav")}  # 24 windows
    try:
        server.wait_ready()

        async def drive() -> tuple[list[httpx.Response | BaseException], float, int]:
            async with httpx.AsyncClient(timeout=60) as client:
                requests = [
                    asyncio.create_task(client.post(f"{server.url}/tag", files=clip))
                    for _ in range(8)
                ]
                deadline = time.monotonic() + 30
                while server.metric("tagger_queued_windows") < 120:
                    assert time.monotonic() < deadline, "the queue never filled"
                    await asyncio.sleep(0.05)
                began = time.monotonic()
                server.process.send_signal(signal.SIGTERM)
                code = await _wait_exit(server, 30)
                answers = await asyncio.gather(*requests, return_exceptions=True)
                return answers, time.monotonic() - began, code

        answers, seconds, code = asyncio.run(drive())
    finally:
        server.stop()

    assert code == 0
    responses = [a for a in answers if isinstance(a, httpx.Response)]
    assert len(responses) == len(answers), [a for a in answers if not isinstance(a, httpx.Response)]
    statuses = sorted(r.status_code for r in responses)
    refused = [r for r in responses if r.status_code == 503]
    assert refused, statuses
    assert set(statuses) <= {200, 503}
    for response in refused:
        assert problem_type(response) == "not-ready"
        assert "shutting down" in response.json()["detail"]
        assert response.headers["retry-after"]
    record("sigterm_stragglers", statuses=statuses, exit_after_s=round(seconds, 2), exit_code=code)
