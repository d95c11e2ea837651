"""What `tagger tag` reads from the environment and how its options get their defaults.

`tagger tag` reads TAGGER_CHECKPOINT, TAGGER_DEVICE, TAGGER_PRECISION, TAGGER_CHANNELS_LAST and
TAGGER_TORCH_THREADS and nothing else: the service's own variables are not its business.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.cli.options import TagRunOptions
from app.pipeline.settings import ModelSettings
from tests.app.audio import encode


def _tag(tmp_path: Path, checkpoint: Path, **environment: str) -> subprocess.CompletedProcess[str]:
    clip = tmp_path / "clip.wav"
    clip.write_bytes(encode("wav", 2.0))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAGGER_")}
    env.update({"TAGGER_CHECKPOINT": str(checkpoint), "TAGGER_PRECISION": "fp32", **environment})
    return subprocess.run(
        [sys.executable, "-m", "app.cli", "tag", "--format", "jsonl", "--no-progress", str(clip)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
    )


def test_invalid_service_only_variables_do_not_stop_tag(tmp_path: Path, checkpoint: Path) -> None:
    done = _tag(tmp_path, checkpoint, TAGGER_MAX_WAIT_MS="-1", TAGGER_PORT="abc")
    assert done.returncode == 0, done.stderr
    (record,) = [json.loads(line) for line in done.stdout.splitlines()]
    assert record["file"].endswith("clip.wav")
    assert record["windows"] == 1
    assert len(record["tags"]) == 10


def test_an_invalid_precision_still_stops_tag_with_a_clear_message(
    tmp_path: Path, checkpoint: Path
) -> None:
    done = _tag(tmp_path, checkpoint, TAGGER_PRECISION="fp64")
    assert done.returncode == 2
    assert "invalid settings" in done.stderr
    assert "precision" in done.stderr
    assert "'auto', 'fp32', 'bf16', 'fp16' or 'int8'" in done.stderr
    assert done.stdout == ""


def test_tag_settings_read_their_variables_and_ignore_the_services(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TAGGER_CHECKPOINT", str(tmp_path / "m.safetensors"))
    monkeypatch.setenv("TAGGER_DEVICE", "cpu")
    monkeypatch.setenv("TAGGER_CHANNELS_LAST", "false")
    monkeypatch.setenv("TAGGER_TORCH_THREADS", "3")
    monkeypatch.setenv("TAGGER_MAX_BATCH_WINDOWS", "0")  # invalid for the service
    settings = ModelSettings()
    assert settings.checkpoint == tmp_path / "m.safetensors"
    assert settings.device == "cpu"
    assert settings.precision == "auto"
    assert settings.channels_last is False
    assert settings.torch_threads == 3


def _args(**given: object) -> argparse.Namespace:
    defaults: dict[str, object] = {
        "paths": ["a.mp3", "b.ogg"],
        "recursive": False,
        "format": "table",
        "output": None,
        "resume": False,
        "top_k": None,
        "threshold": None,
        "segments": False,
        "checkpoint": None,
        "device": None,
        "precision": None,
        "compile": "off",
        "batch_windows": 8,
        "threads": None,
        "decode_workers": None,
        "max_seconds": None,
        "progress": None,
    }
    return argparse.Namespace(**{**defaults, **given})


def test_options_fill_their_defaults_from_the_format_and_the_settings(tmp_path: Path) -> None:
    settings = ModelSettings(checkpoint=tmp_path / "m.safetensors", torch_threads=3)
    table = TagRunOptions.from_args(_args(decode_workers=2), settings)
    assert table.paths == ("a.mp3", "b.ogg")
    assert table.top_k == 5
    assert table.threads == 3
    assert table.decode_workers == 2
    assert table.checkpoint == tmp_path / "m.safetensors"
    assert table.channels_last is True
    jsonl = TagRunOptions.from_args(_args(format="jsonl", threads=2, top_k=7), settings)
    assert jsonl.top_k == 7
    assert jsonl.threads == 2  # --threads wins over TAGGER_TORCH_THREADS
    assert TagRunOptions.from_args(_args(format="csv"), settings).top_k == 10


def test_options_are_frozen(tmp_path: Path) -> None:
    options = TagRunOptions.from_args(_args(), ModelSettings(checkpoint=tmp_path / "m"))
    with pytest.raises(AttributeError):
        options.top_k = 3  # type: ignore[misc]
