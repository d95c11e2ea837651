"""The real service: `tagger serve` (uvicorn) in a subprocess on loopback, driven over HTTP
with real encoded audio in every supported format."""

from __future__ import annotations

import concurrent.futures
import re
import select
import socket
import uuid
from pathlib import Path

import httpx
import pytest

from app.service.problems import PROBLEM_JSON, TYPE_PREFIX
from tests.app.audio import FORMATS, encode, wav_pcm16
from tests.app.conftest import MAIN_SERVER_SETTINGS
from tests.app.servers import FileServer, Route, ServiceProcess


def post_file(server: ServiceProcess, data: bytes, **params: str | int) -> httpx.Response:
    files = {"file": ("upload.bin", data, "application/octet-stream")}
    return httpx.post(f"{server.url}/tag", params=params, files=files, timeout=60)


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_supported_format_is_tagged(server: ServiceProcess, fmt: str) -> None:
    response = post_file(server, encode(fmt, 5.0))
    assert response.status_code == 200, response.text
    body = response.json()
    expected = {"mp3": "mp3", "wav": "wav", "flac": "flac", "ogg": "ogg", "opus": "ogg"}
    assert body["format"] == expected.get(fmt, "mp4")
    # AAC priming adds a few milliseconds.
    assert body["duration_seconds"] == pytest.approx(5.0, abs=0.06)
    assert body["windows"] == 2
    assert len(body["tags"]) == 10


def test_the_format_comes_from_the_content_not_the_name(server: ServiceProcess) -> None:
    files = {"file": ("cover.png", encode("flac", 2.0), "image/png")}
    response = httpx.post(f"{server.url}/tag", files=files, timeout=60)
    assert response.status_code == 200
    assert response.json()["format"] == "flac"
    files = {"file": ("song.mp3", b"GIF89a" + bytes(2000), "audio/mpeg")}
    response = httpx.post(f"{server.url}/tag", files=files, timeout=60)
    assert response.status_code == 415
    assert response.headers["content-type"] == PROBLEM_JSON


def test_concurrent_requests_share_batches(server: ServiceProcess) -> None:
    clip = wav_pcm16(2.0)  # one window each
    batches_before = server.metric("tagger_batch_size_windows_count")
    windows_before = server.metric("tagger_batch_size_windows_sum")
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        responses = list(pool.map(lambda _: post_file(server, clip), range(6)))
    assert all(response.status_code == 200 for response in responses)
    batches = server.metric("tagger_batch_size_windows_count") - batches_before
    windows = server.metric("tagger_batch_size_windows_sum") - windows_before
    assert windows == 6
    assert batches < 6  # some batch held windows of several requests
    assert sum(r.json()["timings"]["queue_ms"] > 0 for r in responses) == 6


def test_request_ids_are_echoed_and_logged(server: ServiceProcess) -> None:
    request_id = f"test-{uuid.uuid4().hex[:8]}"
    response = httpx.get(f"{server.url}/tags", headers={"X-Request-ID": request_id})
    assert response.headers["x-request-id"] == request_id
    forged = 'x" level="critical'  # would forge a log field if accepted verbatim
    generated = httpx.get(f"{server.url}/tags", headers={"X-Request-ID": forged})
    assert generated.headers["x-request-id"] != forged
    assert len(generated.headers["x-request-id"]) == 32
    problem = httpx.get(f"{server.url}/missing", headers={"X-Request-ID": request_id + "-404"})
    assert problem.json()["request_id"] == request_id + "-404"
    records = [r for r in server.logs() if r.get("request_id") == request_id]
    [access] = [r for r in records if r["logger"] == "tagger.access"]
    assert access["path"] == "/tags"
    assert access["status"] == 200
    assert access["outcome"] == "ok"
    assert access["duration_ms"] >= 0


def _raw_upload(server: ServiceProcess, headers: list[str], body_chunks: list[bytes]) -> bytes:
    """Send a request over a plain socket, stopping as soon as the server answers."""
    port = int(server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        request = "\r\n".join(["POST /tag HTTP/1.1", "Host: 127.0.0.1", *headers, "", ""])
        connection.sendall(request.encode())
        for chunk in body_chunks:
            if select.select([connection], [], [], 0)[0]:
                break  # the answer is here before the body is complete
            try:
                connection.sendall(chunk)
            except (TimeoutError, BrokenPipeError, ConnectionResetError):
                break
        connection.settimeout(10)
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += connection.recv(65536)
        head, _, body = answer.partition(b"\r\n\r\n")
        match = re.search(rb"content-length: (\d+)", head, re.IGNORECASE)
        assert match, head
        length = int(match[1])
        while len(body) < length:
            body += connection.recv(65536)
        return head + b"\r\n\r\n" + body


def test_an_oversized_upload_is_refused_while_it_streams(server: ServiceProcess) -> None:
    boundary = "b0undary"
    prefix = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    limit = MAIN_SERVER_SETTINGS["max_upload_bytes"]

    # Announced too large: refused before any of the body is sent.
    answer = _raw_upload(
        server,
        [f"Content-Type: multipart/form-data; boundary={boundary}", "Content-Length: 900000000"],
        [],
    )
    assert answer.startswith(b"HTTP/1.1 413")
    assert b"application/problem+json" in answer
    assert TYPE_PREFIX.encode() + b"upload-too-large" in answer

    # Not announced (chunked): refused once the count passes the limit; the body never ends.
    chunk = bytes(64 * 1024)
    framed = [f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n" for _ in range(40)]
    first = f"{len(prefix):x}\r\n".encode() + prefix + b"\r\n"
    answer = _raw_upload(
        server,
        [f"Content-Type: multipart/form-data; boundary={boundary}", "Transfer-Encoding: chunked"],
        [first, *framed],
    )
    assert 40 * len(chunk) > 1.5 * limit
    assert answer.startswith(b"HTTP/1.1 413")
    assert b"exceeds the limit of 1.5 MB" in answer


def test_audio_over_the_duration_limit_is_refused(server: ServiceProcess) -> None:
    response = post_file(server, wav_pcm16(25.0, sample_rate=8000))
    assert response.status_code == 413
    assert response.json()["type"] == TYPE_PREFIX + "audio-too-long"


def test_corrupt_and_empty_uploads(server: ServiceProcess) -> None:
    mp3 = encode("mp3", 2.0)
    truncated = mp3[:200]
    response = post_file(server, truncated)
    assert response.status_code == 422, response.text
    assert response.json()["type"] in (
        TYPE_PREFIX + "undecodable-audio",
        TYPE_PREFIX + "empty-audio",
    )
    response = post_file(server, b"fLaC" + bytes(3000))
    assert response.status_code == 422
    assert response.json()["type"] == TYPE_PREFIX + "undecodable-audio"
    response = post_file(server, b"")
    assert response.status_code == 422
    assert response.json()["type"] == TYPE_PREFIX + "empty-audio"


def test_tag_by_url(server: ServiceProcess, file_server: FileServer) -> None:
    audio = encode("opus", 4.0)
    file_server.routes["/music/track.opus"] = Route(audio, headers={"Content-Type": "audio/ogg"})
    file_server.routes["/moved"] = Route(status=302, headers={"Location": "/music/track.opus"})
    file_server.routes["/slow.opus"] = Route(audio, delay=4.0)
    file_server.routes["/huge.wav"] = Route(wav_pcm16(60.0))  # ~1.9 MB > 1.5 MB cap
    url = f"{server.url}/tag/url"

    response = httpx.post(url, json={"url": f"{file_server.base}/moved", "top_k": 3}, timeout=60)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["format"] == "ogg"
    assert len(body["tags"]) == 3
    assert body["timings"]["fetch_ms"] > 0

    expectations = {
        "/nothing-here.mp3": (502, "fetch-failed"),
        "/slow.opus": (504, "fetch-timeout"),
        "/huge.wav": (413, "remote-file-too-large"),
    }
    for path, (status, slug) in expectations.items():
        response = httpx.post(url, json={"url": file_server.base + path}, timeout=60)
        assert response.status_code == status, path
        assert response.json()["type"] == TYPE_PREFIX + slug
    response = httpx.post(url, json={"url": "gopher://example.org/"}, timeout=60)
    assert response.status_code == 400
    assert response.json()["type"] == TYPE_PREFIX + "forbidden-url"


def test_downloads_are_held_to_the_fetch_limit_not_the_upload_limit(
    checkpoint: Path, file_server: FileServer
) -> None:
    server = ServiceProcess(
        {
            "checkpoint": str(checkpoint),
            "max_upload_bytes": 200_000,
            "max_fetch_bytes": 1_000_000,
            "allow_private_addresses": True,
            "fetch_allowed_ports": [],
            "torch_threads": 1,
        }
    )
    file_server.routes["/between.wav"] = Route(wav_pcm16(15.0))  # ~480 kB
    file_server.routes["/over.wav"] = Route(wav_pcm16(40.0))  # ~1.3 MB
    try:
        server.wait_ready()
        url = f"{server.url}/tag/url"
        # Over the upload limit, within the fetch limit: tagged.
        response = httpx.post(url, json={"url": f"{file_server.base}/between.wav"}, timeout=60)
        assert response.status_code == 200, response.text
        response = httpx.post(url, json={"url": f"{file_server.base}/over.wav"}, timeout=60)
        assert response.status_code == 413
        body = response.json()
        assert body["type"] == TYPE_PREFIX + "remote-file-too-large"
        assert body["title"] == "Remote file over the fetch limit"
        detail = body["detail"]
        assert "limit of 1 MB on downloads (the fetch limit, TAGGER_MAX_FETCH_BYTES)" in detail
        # An upload of the same file still meets the upload limit.
        response = post_file(server, wav_pcm16(15.0))
        assert response.status_code == 413
        assert response.json()["type"] == TYPE_PREFIX + "upload-too-large"
    finally:
        server.stop()
