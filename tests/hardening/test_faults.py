"""Injected faults in the real service, under concurrent load: a model exception fails only the
batch it happened in, a decoder crash fails only its own request, and the service keeps serving.
(SIGTERM during load is in test_shutdown.py.)

The service runs through tests/hardening/launch.py: the model call raises for any batch holding
a window of exact digital silence, and decoding raises for any upload containing a marker.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.app.audio import silent_wav, wav_pcm16
from tests.app.servers import ServiceProcess
from tests.hardening.tools import problem_type, record

MARKER = b"CRASH-THE-DECODER"
MAX_BATCH = 8
NORMAL = wav_pcm16(2.0)  # one window
SILENT = silent_wav(2.0)  # one window of silence: its batch fails
CRASHING = wav_pcm16(2.0) + MARKER  # trailing bytes after the data chunk are ignored by decoders


@pytest.fixture(scope="module")
def server() -> Iterator[ServiceProcess]:
    process = ServiceProcess(
        {"max_batch_windows": MAX_BATCH, "max_wait_ms": 20},
        command=[
            "-m",
            "tests.hardening.launch",
            "--fail-silent-batches",
            "--crash-decoder-on",
            MARKER.decode(),
        ],
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


def test_a_decoder_crash_fails_only_its_request(server: ServiceProcess) -> None:
    stop = threading.Event()
    load = background_load(server, stop)
    time.sleep(1.0)
    crashed = []
    for _ in range(5):
        crashed.append(post(server, CRASHING))
        time.sleep(0.3)
    stop.set()
    normal = load.result()

    for response in crashed:
        assert response.status_code == 422
        assert problem_type(response) == "undecodable-audio"
        assert "injected" not in response.text
    statuses = [status for _, _, status in normal]
    assert statuses
    assert set(statuses) == {200}
    assert any("decoder raised" in line for line in server.lines)
    record(
        "decoder_fault",
        crashing_requests=len(crashed),
        normal_requests=len(statuses),
        normal_ok=statuses.count(200),
    )
