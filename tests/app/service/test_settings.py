"""Settings from the environment."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
from pathlib import Path

import pydantic
import pytest

import model
from app.pipeline.defaults import default_checkpoint_path
from app.service.settings import Settings


def test_environment_with_the_tagger_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAGGER_MAX_BATCH_WINDOWS", "32")
    monkeypatch.setenv("TAGGER_ALLOW_PRIVATE_ADDRESSES", "true")
    monkeypatch.setenv("TAGGER_FETCH_ALLOWED_NETWORKS", '["10.0.0.0/8"]')
    monkeypatch.setenv("TAGGER_CHECKPOINT", "elsewhere.safetensors")
    monkeypatch.setenv("MAX_WAIT_MS", "99")  # no prefix: ignored
    settings = Settings()
    assert settings.max_batch_windows == 32
    assert settings.allow_private_addresses is True
    assert settings.fetch_allowed_networks == [ipaddress.ip_network("10.0.0.0/8")]
    assert settings.checkpoint == Path("elsewhere.safetensors")
    assert settings.max_wait_ms == 5.0
    assert Settings(max_batch_windows=8).max_batch_windows == 8  # arguments win


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(Settings.model_fields):
        monkeypatch.delenv(f"TAGGER_{name.upper()}", raising=False)
    settings = Settings()
    assert settings.checkpoint == default_checkpoint_path()
    assert settings.checkpoint.parent.parent == Path(model.__file__).resolve().parent
    assert settings.checkpoint.name == "default.safetensors"
    assert (settings.max_batch_windows, settings.max_wait_ms) == (64, 5.0)
    assert settings.max_upload_bytes == 200_000_000
    assert settings.max_audio_seconds == 7200  # two hours: DJ mixes, live sets, radio shows
    assert settings.decode_timeout_s == 30.0
    assert settings.decode_memory_mb == 1024
    assert settings.decode_fault_injection is False
    assert settings.max_redirects == 3
    assert settings.allow_private_addresses is False
    assert settings.fetch_allowed_ports == [80, 443]
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)


_CORES_PROBE = """
import os, sys
os.sched_setaffinity(0, {int(c) for c in sys.argv[1].split(",")})
from app.pipeline.defaults import available_cores, resolve_threads
from app.service.settings import Settings
print(available_cores(), Settings().max_concurrent_decodes, resolve_threads(0))
"""


def _defaults_on(cpus: set[int]) -> list[int]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAGGER_")}
    out = subprocess.run(
        [sys.executable, "-c", _CORES_PROBE, ",".join(map(str, sorted(cpus)))],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    return [int(word) for word in out.stdout.split()]


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs CPU affinity (Linux)")
def test_decode_and_thread_defaults_follow_the_cores_this_process_may_use() -> None:
    # The affinity mask, not the host's CPU count: a process pinned to one CPU gets one decode
    # worker and one torch thread (never zero), and on up to 4 cores still one decoder.
    cpus = sorted(os.sched_getaffinity(0))
    assert _defaults_on({cpus[0]}) == [1, 1, 1]
    if len(cpus) >= 2:
        assert _defaults_on(set(cpus[:2])) == [2, 1, 1]


@pytest.mark.parametrize(
    ("values", "words"),
    [
        ({"max_batch_windows": 64, "max_queued_windows": 10}, "max_queued_windows"),
        ({"max_upload_bytes": 900_000_000}, "decode_memory_mb"),
        ({"device": "tpu"}, "device must be"),
        ({"precision": "fp8"}, "precision"),
        ({"compile": "maybe"}, "compile"),
        ({"max_wait_ms": -1}, "max_wait_ms"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_invalid_settings_are_refused(values: dict[str, object], words: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=words):
        Settings(**values)  # type: ignore[arg-type]
