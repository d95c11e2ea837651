"""Settings from the environment."""

from __future__ import annotations

import ipaddress
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
    assert (settings.max_concurrent_decodes, settings.decode_timeout_s) == (2, 30.0)
    assert settings.decode_memory_mb == 1024
    assert settings.decode_fault_injection is False
    assert settings.max_redirects == 3
    assert settings.allow_private_addresses is False
    assert settings.fetch_allowed_ports == [80, 443]
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)


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
