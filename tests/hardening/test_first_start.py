"""First start under load on the defaults (`make hardening` only): the bundled default model,
default settings (`compile=auto`, automatic precision), an empty compile cache, and four
clients sending several-minute real tracks from readiness until compiled graphs run. Every
request must be answered; the figures go to docs/reliability.md."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.app.first_start_load import drive_first_start, long_tracks
from tests.app.servers import ServiceProcess
from tests.hardening.tools import long_only, record

CLIENTS = 4
TRACK_SECONDS = 300.0
COMPILE_BOUND_S = 1500.0
REQUEST_TIMEOUT_S = 600.0


@long_only
@pytest.mark.timeout(COMPILE_BOUND_S + 2 * REQUEST_TIMEOUT_S + 180)
def test_first_start_under_load_on_the_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tracks = long_tracks(tmp_path, TRACK_SECONDS)
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))  # empty too
    server = ServiceProcess(
        {
            "compile": "auto",
            "compile_cache_dir": str(tmp_path / "compiled"),
            "request_deadline_s": REQUEST_TIMEOUT_S,
        }
    )
    try:
        run = drive_first_start(
            server,
            tracks,
            clients=CLIENTS,
            compile_bound_s=COMPILE_BOUND_S,
            request_timeout_s=REQUEST_TIMEOUT_S,
        )
    finally:
        server.stop()
    record(
        "first_start_under_load",
        clients=CLIENTS,
        track_seconds=TRACK_SECONDS,
        ready_s=round(run.ready_s, 1),
        compiled_s=None if run.compiled_s is None else round(run.compiled_s, 1),
        answered=len(run.statuses),
        ok=sum(status == 200 for status in run.statuses),
        failures=len(run.failures),
        precision=run.runtime.get("precision"),
    )
    assert not run.failures, run.failures
    assert run.clients_left_waiting == 0
    assert run.runtime.get("execution") == "compiled", run.runtime
    assert all(status == 200 for status in run.statuses)
