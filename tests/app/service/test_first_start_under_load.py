"""The first start under load: the regression test of the autocast/compile deadlock.

Before compiled graphs were built out of process (70205e2 and earlier), the service traced and
compiled with dynamo in a background thread while the batcher's thread ran eager batches under
bf16 autocast. PyTorch's autocast cast cache and the GIL were then taken in opposite orders by
the two threads, and the whole process froze for good: no answer, not even `/healthz`.

This test reproduces the conditions on any CPU: bf16 autocast (emulated where not native),
`compile=auto`, an empty compile cache, and four clients sending multi-minute real tracks from
the moment the service is ready until it runs compiled graphs. Every request must be answered
and the process must stay responsive throughout. A second start then finds the artifact in the
cache and serves compiled graphs from the first request.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.app.first_start_load import drive_first_start, long_tracks
from tests.app.servers import ServiceProcess

CLIENTS = 4
TRACK_SECONDS = 150.0  # multi-minute, yet short enough for CI on two cores
COMPILE_BOUND_S = 1200.0
REQUEST_TIMEOUT_S = 240.0


@pytest.mark.slow
@pytest.mark.timeout(COMPILE_BOUND_S + 2 * REQUEST_TIMEOUT_S + 180)
def test_every_request_is_answered_while_the_first_start_compiles(
    checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tracks = long_tracks(tmp_path, TRACK_SECONDS)
    # Inductor's own caches empty too (the build process inherits this): a real first start.
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    settings = {
        "checkpoint": str(checkpoint),
        "precision": "bf16",
        "compile": "auto",
        "compile_cache_dir": str(tmp_path / "compiled"),  # empty: a first start
        "max_audio_seconds": 3600,
        "request_deadline_s": REQUEST_TIMEOUT_S,
    }
    server = ServiceProcess(settings)
    try:
        run = drive_first_start(
            server,
            tracks,
            clients=CLIENTS,
            compile_bound_s=COMPILE_BOUND_S,
            request_timeout_s=REQUEST_TIMEOUT_S,
        )
        said = messages(server)
    finally:
        server.stop()
    assert not run.failures, run.failures
    assert run.clients_left_waiting == 0, "a client never got an answer"
    assert run.runtime.get("compile_error") is None, run.runtime.get("compile_error")
    assert run.runtime.get("execution") == "compiled", run.runtime
    assert "(built now in " in str(run.runtime.get("artifact"))
    assert run.runtime.get("compile_cache") == settings["compile_cache_dir"]
    assert run.ready_s < 30  # eager warm-up only: the build runs beside the service
    assert "execution: eager" in said
    assert any(m.startswith("execution: compiled (batch shapes") for m in said)
    assert run.statuses
    assert all(status == 200 for status in run.statuses), run.statuses

    # The second start finds the artifact: compiled graphs from the first request on.
    started = time.monotonic()
    server = ServiceProcess(settings)
    try:
        server.wait_ready(timeout=60)
        warm = httpx.get(f"{server.url}/model", timeout=10).json()["runtime"]
        assert (warm["execution"], warm["compiled"]) == ("compiled", True)
        assert "(from the cache, built in " in str(warm["artifact"])
        assert any(m.startswith("compiled artifact: ") for m in messages(server))
        assert time.monotonic() - started < 60
    finally:
        server.stop()


def messages(server: ServiceProcess) -> list[str]:
    return [str(record.get("message")) for record in server.logs()]
