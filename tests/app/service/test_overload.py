"""Overload behaviour of the real service: windows that do not fit the queue wait for room
(the request is answered, not refused), and a client that hangs up has its queued windows
dropped before they reach the model.

The server computes one window per batch, so a 36-window request keeps the model busy for a
second or more while the test acts.
"""

from __future__ import annotations

import concurrent.futures
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.app.audio import wav_pcm16
from tests.app.servers import ServiceProcess

WINDOW = 59049
QUEUE = 48


def clip_with_windows(n: int) -> bytes:
    """16 kHz mono WAV that splits into exactly `n` windows."""
    return wav_pcm16((n - 0.5) * WINDOW / 16000)


@pytest.fixture(scope="module")
def busy_server(checkpoint: Path) -> Iterator[ServiceProcess]:
    process = ServiceProcess(
        {
            "checkpoint": str(checkpoint),
            "max_batch_windows": 1,
            "max_wait_ms": 0,
            "max_queued_windows": QUEUE,
            "max_request_queued_windows": QUEUE,
            "retry_after_s": 2,
            "torch_threads": 1,
        }
    )
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()


def post(server: ServiceProcess, data: bytes) -> httpx.Response:
    files = {"file": ("clip.wav", data, "audio/wav")}
    return httpx.post(f"{server.url}/tag", files=files, timeout=120)


def wait_for(server: ServiceProcess, name: str, at_least: float, labels: str = "") -> None:
    deadline = time.monotonic() + 30
    while server.metric(name, labels) < at_least:
        assert time.monotonic() < deadline, f"{name} never reached {at_least}"
        time.sleep(0.01)


def test_windows_over_the_queue_bound_wait_for_room_and_are_tagged(
    busy_server: ServiceProcess,
) -> None:
    big, more = clip_with_windows(36), clip_with_windows(31)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        first = pool.submit(post, busy_server, big)
        wait_for(busy_server, "tagger_queued_windows", 20)
        # 31 more windows cannot all fit next to the 20+ still queued: the rest waits.
        second = pool.submit(post, busy_server, more)
        peak = 0.0
        while not second.done():
            peak = max(peak, busy_server.metric("tagger_queued_windows"))
            time.sleep(0.02)
        assert peak <= QUEUE
        assert first.result().status_code == 200
        assert second.result().status_code == 200
        assert second.result().json()["windows"] == 31
    assert busy_server.metric("tagger_requests_total", 'endpoint="/tag",outcome="queue_full"') == 0


def _multipart(data: bytes) -> bytes:
    boundary = "b0undary"
    return (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="c.wav"\r\n'
            "Content-Type: audio/wav\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )


def test_a_client_that_disconnects_has_its_windows_dropped(busy_server: ServiceProcess) -> None:
    port = int(busy_server.url.rsplit(":", 1)[1])
    body, big = _multipart(clip_with_windows(40)), clip_with_windows(36)
    batches_before = busy_server.metric("tagger_batch_size_windows_count")
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        first = pool.submit(post, busy_server, big)
        wait_for(busy_server, "tagger_queued_windows", 20)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
            head = (
                "POST /tag HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                "Content-Type: multipart/form-data; boundary=b0undary\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            )
            connection.sendall(head.encode() + body)
            # The first request, this one and the /metrics request itself are in flight.
            wait_for(busy_server, "tagger_inflight_requests", 3)
            time.sleep(0.2)  # decoded and queued beside the first request's windows
        # The connection is closed here, long before the model reaches most of its windows
        # (it takes 40 one-window batches; the least-served request goes first).
        wait_for(busy_server, "tagger_dropped_windows_total", 1, 'reason="cancelled"')
        assert first.result().status_code == 200
    dropped = busy_server.metric("tagger_dropped_windows_total", 'reason="cancelled"')
    assert dropped >= 1
    computed = busy_server.metric("tagger_batch_size_windows_count") - batches_before
    # The first request's 36, and of the other's 40 neither the dropped ones nor those still
    # waiting to enter the queue when it left.
    assert 36 <= computed <= 36 + 40 - dropped
    assert busy_server.metric("tagger_requests_total", 'endpoint="/tag",outcome="cancelled"') == 1
