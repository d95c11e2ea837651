"""Concurrent clients against a service's first start: from readiness until it runs compiled
graphs, every client sends real multi-minute tracks back to back, while the health check is
polled. Used by the regression test (tests/app/service/test_first_start_under_load.py) and by
`make hardening` (tests/hardening/test_first_start.py)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import soundfile

from model.audio.decode import decode_audio
from tests.app.catalog.music import TRACKS, fetch_music
from tests.app.servers import ServiceProcess


def long_tracks(folder: Path, seconds: float) -> list[bytes]:
    """The real test tracks, each cut or looped to `seconds`, as 16-bit FLAC at 22.05 kHz."""
    music = fetch_music()
    tracks = []
    for name, path in TRACKS.items():
        samples = decode_audio(str(music / path), sample_rate=22050).samples
        length = int(seconds * 22050)
        samples = np.tile(samples, int(np.ceil(length / len(samples))))[:length]
        out = folder / f"{name}.flac"
        soundfile.write(out, samples, 22050, subtype="PCM_16")
        tracks.append(out.read_bytes())
    return tracks


@dataclass
class FirstStartRun:
    """What happened: every answer's status, what went wrong, the last `/model` runtime."""

    ready_s: float = 0.0
    compiled_s: float | None = None
    statuses: list[int] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    runtime: dict[str, object] = field(default_factory=dict)
    clients_left_waiting: int = 0


def drive_first_start(
    server: ServiceProcess,
    tracks: list[bytes],
    *,
    clients: int,
    compile_bound_s: float,
    request_timeout_s: float,
) -> FirstStartRun:
    """Start clients at readiness and keep them sending until compiled (or a failure)."""
    started = time.monotonic()
    run = FirstStartRun()
    server.wait_ready(timeout=120)
    run.ready_s = time.monotonic() - started
    compiled = threading.Event()

    def client(index: int) -> None:
        sent = index
        while not compiled.is_set() and not run.failures:
            files = {"file": ("track.flac", tracks[sent % len(tracks)], "audio/flac")}
            try:
                response = httpx.post(f"{server.url}/tag", files=files, timeout=request_timeout_s)
            except httpx.TransportError as error:
                run.failures.append(f"client {index}: no answer ({type(error).__name__})")
                return
            run.statuses.append(response.status_code)
            if response.status_code != 200:
                run.failures.append(f"client {index}: {response.status_code} {response.text[:200]}")
            sent += 1

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + compile_bound_s
    while time.monotonic() < deadline and not run.failures:
        try:
            # A frozen process stops answering even its health check.
            health = httpx.get(f"{server.url}/healthz", timeout=5)
            if health.status_code != 200:
                run.failures.append(f"/healthz answered {health.status_code}: {health.text}")
                break
            run.runtime = httpx.get(f"{server.url}/model", timeout=5).json()["runtime"]
        except httpx.TransportError as error:
            run.failures.append(f"the service stopped answering ({type(error).__name__})")
            break
        if run.runtime["execution"] != "compiling":
            run.compiled_s = time.monotonic() - started
            break
        time.sleep(1)
    compiled.set()
    for thread in threads:
        thread.join(timeout=request_timeout_s + 10)
    run.clients_left_waiting = sum(thread.is_alive() for thread in threads)
    return run
