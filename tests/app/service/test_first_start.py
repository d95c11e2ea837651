"""The service tells a person at a terminal what it is doing in readable lines, and a log
collector in JSON lines. (The first start with compilation, cold and warm, is
test_first_start_under_load.py.)
"""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
import threading
from pathlib import Path

import httpx

from tests.app.audio import encode
from tests.app.servers import ROOT, ServiceProcess


def tag(server: ServiceProcess) -> httpx.Response:
    files = {"file": ("clip.wav", encode("wav", 4.0), "audio/wav")}
    return httpx.post(f"{server.url}/tag", files=files, timeout=60)


def runtime(server: ServiceProcess) -> dict[str, object]:
    info: dict[str, object] = httpx.get(f"{server.url}/model", timeout=10).json()["runtime"]
    return info


def messages(server: ServiceProcess) -> list[str]:
    return [str(record.get("message")) for record in server.logs()]


def test_logs_are_json_lines_when_stderr_is_not_a_terminal(server: ServiceProcess) -> None:
    said = messages(server)
    assert any(m.startswith("loading checkpoint ") for m in said)
    assert "warming up batch shapes [1, 2, 4, 8] eagerly (a few seconds)" in said
    assert "execution: eager" in said
    assert runtime(server)["execution"] == "eager"  # the test servers run compile=off


def test_logs_are_readable_lines_on_a_terminal(checkpoint: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAGGER_")}
    env.update(TAGGER_CHECKPOINT=str(checkpoint), TAGGER_COMPILE="off", TAGGER_TORCH_THREADS="1")
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1", "--port", "0"],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=terminal,
    )
    os.close(terminal)
    output = bytearray()
    running = threading.Event()

    def read() -> None:
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # the process closed the terminal
                return
            if not chunk:
                return
            output.extend(chunk)
            if b"Uvicorn running on" in output:
                running.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert running.wait(60), output.decode(errors="replace")
    finally:
        process.terminate()
        process.wait(timeout=20)
        reader.join(timeout=5)
        os.close(controller)
    lines = output.decode().splitlines()
    assert not any(line.startswith("{") for line in lines), lines
    line = r"\d\d:\d\d:\d\d (info|warning) +[\w.]+: "
    # After uvicorn's "Started server process" and "Waiting for application startup."
    assert any(re.match(line + "loading checkpoint ", x) for x in lines[:3]), lines[:3]
    assert any(re.match(line + r"warming up batch shapes \[1, 2, 4, 8\] eagerly", x) for x in lines)
    assert any(re.fullmatch(line + r"execution: eager  execution=eager\r?", x) for x in lines)
