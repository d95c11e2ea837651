"""Real servers for the service tests, all on loopback.

- `ServiceProcess`: `python -m app.cli serve --port 0` in a subprocess (uvicorn picks a free port,
  read back from its log), with `TAGGER_*` settings in its environment.
- `FileServer`: a tiny threaded HTTP/1.0 server with programmable routes, standing in for the
  web servers `POST /tag/url` downloads from.
- `AcceptCounter`: a TCP listener that only counts connections, to prove nothing connected.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
_RUNNING = re.compile(r"Uvicorn running on http://127\.0\.0\.1:(\d+)")


class ServiceProcess:
    """The real service in its own process, reachable at `self.url`.

    Args:
        settings: `TAGGER_*` settings, by field name.
        command: What to run instead of `python -m app.cli serve` (it must accept --host and
            --port), e.g. a launcher that injects faults.
    """

    def __init__(self, settings: dict[str, Any], *, command: list[str] | None = None) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TAGGER_")}
        # Compiling takes a minute; servers compile only when a test asks.
        # Nothing balances load across test servers: they stop without the readiness drain.
        defaults = {"compile": "off", "shutdown_drain_s": 0}
        if os.environ.get("TAGGER_COMPILE_CACHE_DIR"):  # the test session's (tests/conftest.py)
            defaults["compile_cache_dir"] = os.environ["TAGGER_COMPILE_CACHE_DIR"]
        for name, value in {**defaults, **settings}.items():
            env[f"TAGGER_{name.upper()}"] = (
                json.dumps(value) if isinstance(value, list | bool) else str(value)
            )
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            [
                sys.executable,
                *(command or ["-m", "app.cli", "serve"]),
                *("--host", "127.0.0.1", "--port", "0"),
            ],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._port: int | None = None
        self._port_found = threading.Event()
        self._reader = threading.Thread(target=self._read_logs, daemon=True)
        self._reader.start()
        self.url = ""

    def _read_logs(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)
            match = _RUNNING.search(line)
            if match:
                self._port = int(match.group(1))
                self._port_found.set()
        self._port_found.set()  # the process ended

    def wait_ready(self, timeout: float = 120.0) -> None:
        if not self._port_found.wait(timeout) or self._port is None:
            self.stop()
            raise RuntimeError("the service did not start:\n" + "".join(self.lines[-30:]))
        self.url = f"http://127.0.0.1:{self._port}"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/readyz", timeout=5).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("the service never became ready:\n" + "".join(self.lines[-30:]))

    def logs(self) -> list[dict[str, Any]]:
        """The JSON log records written so far (other stderr lines are skipped)."""
        records = []
        for line in list(self.lines):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return records

    def metric(self, name: str, labels: str = "") -> float:
        """The current value of one series from /metrics (0 when absent)."""
        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        return metric_value(text, name, labels)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def metric_value(text: str, name: str, labels: str = "") -> float:
    """Read `name{labels}` from Prometheus text; labels as written, e.g. `reason="cancelled"`."""
    series = f"{name}{{{labels}}}" if labels else name
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@dataclass
class Route:
    """A canned response.

    Attributes:
        body: The bytes to send.
        status: HTTP status.
        headers: Extra headers (e.g. Location).
        content_length: Send Content-Length (else the body ends when the connection closes).
        delay: Seconds to wait before answering.
    """

    body: bytes = b""
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    content_length: bool = True
    delay: float = 0.0


@dataclass
class SeenRequest:
    path: str
    headers: dict[str, str]


class FileServer:
    """A threaded HTTP/1.0 server on `host` whose routes the test sets up."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[SeenRequest] = []
        self.active = 0
        self.max_active = 0
        self._lock = threading.Lock()
        owner = self

        class _Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner._serve(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer((host, 0), _Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self.base = f"http://{host}:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def _serve(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        with self._lock:
            self.requests.append(SeenRequest(handler.path, dict(handler.headers)))
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            route = self.routes.get(handler.path.split("?", 1)[0])
            if route is None:
                route = Route(b"not found", status=404)
            if route.delay:
                time.sleep(route.delay)
            handler.send_response(route.status)
            for name, value in route.headers.items():
                handler.send_header(name, value)
            if route.content_length:
                handler.send_header("Content-Length", str(len(route.body)))
            handler.end_headers()
            try:
                for start in range(0, len(route.body), 65536):
                    handler.wfile.write(route.body[start : start + 65536])
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client stopped reading (byte cap, sniffing): expected
        finally:
            with self._lock:
                self.active -= 1

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class AcceptCounter:
    """A TCP listener that accepts, counts and closes connections."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._socket = socket.socket(family, socket.SOCK_STREAM)
        self._socket.bind((host, 0))
        self._socket.listen(16)
        self._socket.settimeout(0.1)
        self.port = int(self._socket.getsockname()[1])
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._socket.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            connection.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._socket.close()


@contextmanager
def accept_counter(host: str = "127.0.0.1") -> Iterator[AcceptCounter]:
    counter = AcceptCounter(host)
    try:
        yield counter
    finally:
        counter.close()
