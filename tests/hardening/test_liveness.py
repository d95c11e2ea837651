"""Liveness that means something: a stuck batch fails `/healthz` within its bound, SIGTERM ends
the process within its grace period even while a batch is stuck, and the watchdog ends a
process whose batch stays stuck, so a restart policy without health checks replaces it.

The service runs through tests/hardening/launch.py with `--hang-silent-batches`: the model
call never returns for a batch holding a window of digital silence, as a hung kernel would.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time

import httpx

from tests.app.audio import silent_wav, wav_pcm16
from tests.app.servers import ServiceProcess
from tests.hardening.tools import problem_type, record

STUCK_BATCH_S = 3.0
HARD_LIMIT_S = 6.0
LAUNCH = ["-m", "tests.hardening.launch", "--hang-silent-batches"]


def post_in_background(server: ServiceProcess, data: bytes) -> threading.Thread:
    def post() -> None:
        files = {"file": ("clip.wav", data, "audio/wav")}
        with contextlib.suppress(httpx.TransportError):  # the process is stopped under it
            httpx.post(f"{server.url}/tag", files=files, timeout=60)

    thread = threading.Thread(target=post, daemon=True)
    thread.start()
    return thread


def messages(server: ServiceProcess) -> list[str]:
    return [str(record.get("message")) for record in server.logs()]


def test_a_stuck_batch_fails_healthz_then_sigterm_exits_within_the_grace_period() -> None:
    server = ServiceProcess(
        {
            "stuck_batch_s": STUCK_BATCH_S,
            "watchdog_s": 0,  # this test watches /healthz; the watchdog has its own test
            "shutdown_hard_limit_s": HARD_LIMIT_S,
            "shutdown_timeout_s": 2,
        },
        command=LAUNCH,
    )
    try:
        server.wait_ready()
        health = httpx.get(f"{server.url}/healthz", timeout=5)
        assert health.status_code == 200
        # A normal request is answered; then a silent one hangs its batch.
        files = {"file": ("clip.wav", wav_pcm16(2.0), "audio/wav")}
        assert httpx.post(f"{server.url}/tag", files=files, timeout=60).status_code == 200
        post_in_background(server, silent_wav(2.0))
        hung = time.monotonic()
        while True:
            health = httpx.get(f"{server.url}/healthz", timeout=5)
            if health.status_code != 200:
                break
            assert time.monotonic() - hung < STUCK_BATCH_S + 5, "healthz never failed"
            time.sleep(0.2)
        detected = time.monotonic() - hung
        assert health.status_code == 503
        assert problem_type(health) == "unhealthy"
        assert "stuck" in health.json()["detail"]
        assert STUCK_BATCH_S <= detected <= STUCK_BATCH_S + 5

        server.process.send_signal(signal.SIGTERM)
        stopping = time.monotonic()
        status = server.process.wait(timeout=HARD_LIMIT_S + 10)
        took = time.monotonic() - stopping
        assert status == 70
        assert took <= HARD_LIMIT_S + 3
        said = messages(server)
        assert any(m.startswith("exiting with status 70: still running") for m in said), said
        record(
            "liveness_stuck_batch",
            healthz_503_after_s=round(detected, 1),
            sigterm_exit_after_s=round(took, 1),
        )
    finally:
        server.stop()


def test_the_watchdog_ends_a_process_whose_batch_stays_stuck() -> None:
    watchdog_s = 3.0
    server = ServiceProcess(
        {"stuck_batch_s": STUCK_BATCH_S, "watchdog_s": watchdog_s}, command=LAUNCH
    )
    try:
        server.wait_ready()
        post_in_background(server, silent_wav(2.0))
        hung = time.monotonic()
        status = server.process.wait(timeout=STUCK_BATCH_S + watchdog_s + 15)
        took = time.monotonic() - hung
        assert status == 1
        assert STUCK_BATCH_S + watchdog_s <= took <= STUCK_BATCH_S + watchdog_s + 5
        said = messages(server)
        assert any(m.startswith("exiting with status 1: a batch has been running") for m in said)
        record("liveness_watchdog", watchdog_exit_after_s=round(took, 1))
    finally:
        server.stop()
