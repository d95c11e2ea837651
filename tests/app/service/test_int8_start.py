"""The int8 path at start-up: the bundled model answers within seconds (eager bf16), says in a
log line and in `/model` whether and why it uses int8, then switches to compiled int8."""

from __future__ import annotations

import time

import httpx
import pytest

from model.quantize import cpu_int8_flags
from tests.app.audio import encode
from tests.app.servers import ROOT, ServiceProcess

# v1's int8 calibration passes and was timed on a VNNI CPU, so `auto` uses int8 for it there.
DEFAULT = ROOT / "model" / "weights" / "default-v1.safetensors"


def runtime(server: ServiceProcess) -> dict[str, object]:
    info: dict[str, object] = httpx.get(f"{server.url}/model", timeout=10).json()["runtime"]
    return info


def tag(server: ServiceProcess) -> int:
    files = {"file": ("clip.mp3", encode("mp3", 4.0), "audio/mpeg")}
    return httpx.post(f"{server.url}/tag", files=files, timeout=120).status_code


def test_without_compilation_the_service_says_why_it_does_not_use_int8() -> None:
    server = ServiceProcess({"checkpoint": str(DEFAULT), "torch_threads": 1})
    try:
        server.wait_ready()
        info = runtime(server)
        assert info["int8"] is False
        assert info["int8_reason"] == "int8 needs compiled graphs and compilation is off"
        said = [str(record.get("message")) for record in server.logs()]
        assert "not using int8: int8 needs compiled graphs and compilation is off" in said
    finally:
        server.stop()


@pytest.mark.slow
def test_the_bundled_model_serves_at_once_then_switches_to_int8() -> None:
    if not cpu_int8_flags():
        pytest.skip("this CPU has no int8 dot products: the service stays bf16/fp32")
    started = time.monotonic()
    # The session's compile cache (tests/conftest.py): nothing has built v1's int8 artifact
    # before this test (tests/app runs before tests/model), and test_quantize.py's int8 parity
    # test then finds it there instead of building it again.
    # Model calls of one window: one int8 package to build instead of four (the same
    # artifact as the int8 parity test's, tests/model/test_quantize.py).
    server = ServiceProcess({"checkpoint": str(DEFAULT), "compile": "auto", "max_chunk_windows": 1})
    try:
        server.wait_ready(timeout=30)
        assert tag(server) == 200
        assert time.monotonic() - started < 30
        first = runtime(server)
        assert (first["execution"], first["int8"]) == ("compiling", True)
        assert "accuracy check passed" in str(first["int8_reason"])
        deadline = time.monotonic() + 900
        while runtime(server)["execution"] == "compiling":
            assert time.monotonic() < deadline, "int8 compilation never finished"
            time.sleep(2)
        last = runtime(server)
        assert (last["execution"], last["precision"], last["compile_error"]) == (
            "compiled",
            "int8",
            None,
        )
        assert tag(server) == 200
    finally:
        server.stop()
