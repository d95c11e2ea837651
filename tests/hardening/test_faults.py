"""Injected faults in the real service, under concurrent load: a model exception fails only the
batch it happened in; a decode worker that segfaults, hangs or exhausts its memory fails only its
own request, is replaced, and the service stays ready throughout. (SIGTERM during load is in
test_shutdown.py.)

The service runs through tests/hardening/launch.py, so the model call raises for any batch
holding a window of exact digital silence, and with `TAGGER_DECODE_FAULT_INJECTION` its decode
worker processes kill themselves with SIGSEGV, sleep for ever, or allocate without bound on an
upload carrying the matching marker (app/service/decode_worker.py).
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from app.service.decode_worker import FAULT_HANG, FAULT_MEMORY, FAULT_SEGFAULT
from tests.app.audio import silent_wav, wav_pcm16
from tests.app.servers import ServiceProcess
from tests.hardening.tools import problem_type, record

MAX_BATCH = 8
DECODE_TIMEOUT_S = 3.0
NORMAL = wav_pcm16(2.0)  # one window
SILENT = silent_wav(2.0)  # one window of silence: its batch fails
# Trailing bytes after a WAV's data chunk are ignored by decoders, so these are valid files.
SEGFAULTING = wav_pcm16(2.0) + FAULT_SEGFAULT
HANGING = wav_pcm16(2.0) + FAULT_HANG
HOARDING = wav_pcm16(2.0) + FAULT_MEMORY


@pytest.fixture(scope="module")
def server() -> Iterator[ServiceProcess]:
    process = ServiceProcess(
        {
            "max_batch_windows": MAX_BATCH,
            "max_wait_ms": 20,
            "max_concurrent_decodes": 2,
            "decode_timeout_s": DECODE_TIMEOUT_S,
            "decode_fault_injection": True,
        },
        command=["-m", "tests.hardening.launch", "--fail-silent-batches"],
    )
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()


def post(server: ServiceProcess, data: bytes) -> httpx.Response:
    files = {"file": ("clip.wav", data, "audio/wav")}
    return httpx.post(f"{server.url}/tag", files=files, timeout=60)


def background_load(
    server: ServiceProcess, stop: threading.Event, clients: int = 4
) -> concurrent.futures.Future[list[tuple[float, float, int]]]:
    """Clients posting normal clips back to back until `stop`; (start, end, status) each."""

    def client() -> list[tuple[float, float, int]]:
        seen = []
        while not stop.is_set():
            started = time.monotonic()
            status = post(server, NORMAL).status_code
            seen.append((started, time.monotonic(), status))
        return seen

    pool = concurrent.futures.ThreadPoolExecutor(clients)

    def run_all() -> list[tuple[float, float, int]]:
        futures = [pool.submit(client) for _ in range(clients)]
        return [item for future in futures for item in future.result()]

    return concurrent.futures.ThreadPoolExecutor(1).submit(run_all)


def test_a_model_exception_fails_only_its_batch(server: ServiceProcess) -> None:
    failed_before = server.metric("tagger_failed_batches_total")
    stop = threading.Event()
    load = background_load(server, stop)
    time.sleep(1.0)
    poisoned = []
    for _ in range(5):
        response = post(server, SILENT)
        poisoned.append(response)
        time.sleep(0.5)
    stop.set()
    normal = load.result()

    for response in poisoned:
        assert response.status_code == 500
        assert problem_type(response) == "inference-failed"
        assert "injected" not in response.text  # the exception stays in the server log
    failed = server.metric("tagger_failed_batches_total") - failed_before
    assert 1 <= failed <= len(poisoned)
    statuses = [status for _, _, status in normal]
    assert set(statuses) <= {200, 500}
    collateral = statuses.count(500)
    # Only requests that shared a failing batch fail with it: at most the rest of each batch.
    assert collateral <= failed * (MAX_BATCH - 1)
    assert statuses.count(200) > collateral
    assert post(server, NORMAL).status_code == 200  # and the batcher keeps serving
    record(
        "model_fault",
        poisoned_requests=len(poisoned),
        failed_batches=int(failed),
        normal_requests=len(statuses),
        normal_failed_with_their_batch=collateral,
        normal_ok=statuses.count(200),
    )


def readiness_watch(
    server: ServiceProcess, stop: threading.Event
) -> concurrent.futures.Future[list[int]]:
    """/readyz statuses every 50 ms until `stop`."""

    def watch() -> list[int]:
        seen = []
        while not stop.is_set():
            seen.append(httpx.get(f"{server.url}/readyz", timeout=10).status_code)
            time.sleep(0.05)
        return seen

    return concurrent.futures.ThreadPoolExecutor(1).submit(watch)


@pytest.mark.parametrize(
    ("fault", "upload", "reason"),
    [
        ("segfault", SEGFAULTING, "crashed"),
        ("hang", HANGING, "timeout"),
        ("memory", HOARDING, "memory"),
    ],
)
def test_a_failing_decode_worker_fails_only_its_request(
    server: ServiceProcess, fault: str, upload: bytes, reason: str
) -> None:
    restarts_before = server.metric("tagger_decoder_restarts_total", f'reason="{reason}"')
    stop = threading.Event()
    load = background_load(server, stop)
    ready = readiness_watch(server, stop)
    time.sleep(1.0)
    faulted = []
    for _ in range(3):
        started = time.monotonic()
        response = post(server, upload)
        faulted.append((response, time.monotonic() - started))
        time.sleep(0.3)
    time.sleep(1.0)  # load continues after the last replacement
    stop.set()
    normal = load.result()
    readiness = ready.result()

    for response, _ in faulted:
        assert response.status_code == 422, response.text
        assert problem_type(response) == "decoder-failed"
        assert "other requests were not affected" in response.json()["detail"]
    if fault == "hang":  # answered when the decode timeout fires, not at the deadline
        assert all(DECODE_TIMEOUT_S <= seconds < DECODE_TIMEOUT_S + 5 for _, seconds in faulted)
    statuses = [status for _, _, status in normal]
    assert len(statuses) >= 10
    assert set(statuses) == {200}
    assert set(readiness) == {200}
    restarts = server.metric("tagger_decoder_restarts_total", f'reason="{reason}"')
    assert restarts - restarts_before == len(faulted)
    record(
        f"decoder_{fault}",
        faulted_requests=len(faulted),
        faulted_seconds_max=round(max(seconds for _, seconds in faulted), 2),
        normal_requests=len(statuses),
        normal_ok=statuses.count(200),
        readiness_checks=len(readiness),
        readiness_ok=readiness.count(200),
    )
