"""Slow and stalled clients against the real service: bodies that stop or trickle are cut with
408 and their connections closed, and stalled uploads from one address do not lock others out.

Linux routes all of 127.0.0.0/8 on the loopback interface, so a client socket bound to
127.0.0.2 (or 127.0.1.x) reaches the server from a second address.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from app.service.problems import PROBLEM_JSON, TYPE_PREFIX
from tests.app.audio import encode
from tests.app.servers import ServiceProcess

BOUNDARY = "b0undary"


def multipart_head(content_length: int) -> bytes:
    return (
        "POST /tag HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
        f"Content-Length: {content_length}\r\n\r\n"
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n'
        "Content-Type: audio/wav\r\n\r\n"
    ).encode()


def connect(server: ServiceProcess, source: str = "127.0.0.1") -> socket.socket:
    port = int(server.url.rsplit(":", 1)[1])
    return socket.create_connection(("127.0.0.1", port), timeout=20, source_address=(source, 0))


def read_until_closed(connection: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (a timeout fails the test)."""
    data = b""
    while chunk := connection.recv(65536):
        data += chunk
    return data


def parse(raw: bytes) -> tuple[int, dict[str, str], dict[str, object]]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, json.loads(body)


def post_from(server: ServiceProcess, source: str, data: bytes) -> httpx.Response:
    transport = httpx.HTTPTransport(local_address=source)
    with httpx.Client(transport=transport, timeout=60) as client:
        files = {"file": ("clip.wav", data, "audio/wav")}
        return client.post(f"{server.url}/tag", files=files)


@pytest.fixture(scope="module")
def impatient_server(checkpoint: Path) -> Iterator[ServiceProcess]:
    process = ServiceProcess(
        {
            "checkpoint": str(checkpoint),
            "body_idle_timeout_s": 1.5,
            "min_body_rate_bytes_s": 20_000,
            "body_rate_grace_s": 3.0,
            "torch_threads": 1,
        }
    )
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()


def test_a_stalled_body_is_cut_with_408_and_its_connection_closed(
    impatient_server: ServiceProcess,
) -> None:
    with connect(impatient_server) as connection:
        connection.sendall(multipart_head(100_000) + bytes(1000))
        started = time.monotonic()
        raw = read_until_closed(connection)  # returns only once the server has closed it
        waited = time.monotonic() - started
    status, headers, body = parse(raw)
    assert status == 408
    assert headers["content-type"] == PROBLEM_JSON
    assert headers["connection"] == "close"
    assert body["type"] == TYPE_PREFIX + "body-timeout"
    assert "no bytes for 1.5 s" in str(body["detail"])
    assert waited >= 1.4  # not before the configured idle time
    assert impatient_server.metric("tagger_cut_connections_total", 'reason="idle"') == 1
    assert (
        impatient_server.metric("tagger_requests_total", 'endpoint="/tag",outcome="body_timeout"')
        == 1
    )


def test_a_body_below_the_minimum_rate_is_cut(impatient_server: ServiceProcess) -> None:
    with connect(impatient_server) as connection:
        connection.sendall(multipart_head(100_000))
        connection.settimeout(0.25)
        raw = b""
        # 200 bytes every 0.25 s, 800 bytes/s: never idle, far below 20,000 bytes/s. Wait for
        # an answer before each send: bytes sent after the server closed make it reset the
        # connection, which can discard the 408 before it is read.
        for _ in range(40):
            try:
                chunk = connection.recv(65536)
            except TimeoutError:
                chunk = None
            except ConnectionResetError:
                break
            if chunk is not None:
                raw += chunk
                break
            try:
                connection.sendall(bytes(200))
            except (BrokenPipeError, ConnectionResetError):
                break
        connection.settimeout(20)
        raw += read_until_closed(connection)
    status, _, body = parse(raw)
    assert status == 408
    assert body["type"] == TYPE_PREFIX + "body-timeout"
    assert "arrived too slowly" in str(body["detail"])
    assert impatient_server.metric("tagger_cut_connections_total", 'reason="slow"') == 1


def test_an_ordinary_upload_is_not_cut(impatient_server: ServiceProcess) -> None:
    response = post_from(impatient_server, "127.0.0.1", encode("wav", 4.0))
    assert response.status_code == 200, response.text


def test_stalled_uploads_do_not_lock_out_other_clients(checkpoint: Path) -> None:
    # The defaults of the report: 32 requests at work, a 30 s idle timeout.
    server = ServiceProcess({"checkpoint": str(checkpoint), "torch_threads": 1})
    try:
        server.wait_ready()
        with ExitStack() as stack:
            stalled = []
            # 40 stalled uploads from one address, then one from each of 40 more addresses.
            sources = ["127.0.0.1"] * 40 + [f"127.0.1.{i}" for i in range(1, 41)]
            for source in sources:
                connection = stack.enter_context(connect(server, source))
                connection.sendall(multipart_head(1_000_000) + bytes(1000))
                stalled.append(connection)
            time.sleep(0.5)  # all of them reach the server and wait for their bodies
            response = post_from(server, "127.0.0.2", encode("wav", 4.0))
            assert response.status_code == 200, response.text
            # The first address got its share (8 of 32) and the rest were refused at once.
            refused = 0
            for connection in stalled[:40]:
                connection.settimeout(0.5)
                try:
                    answer = connection.recv(65536)
                except TimeoutError:
                    continue
                status, headers, body = parse(answer)
                assert (status, body["type"]) == (429, TYPE_PREFIX + "client-busy")
                assert headers["retry-after"] == "1"
                refused += 1
            assert refused == 32
    finally:
        server.stop()
