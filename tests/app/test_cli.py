"""The `tagger` command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from app.cli import _missing_checkpoint_message, main
from app.settings import default_checkpoint_path
from tests.app.conftest import GUITAR_THRESHOLD


def test_tags_prints_the_vocabulary(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tags"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == "index\tname\tcategory\tsynonym_group\tthreshold"
    assert lines[2] == "0\tguitar\tinstrument\tguitar\t0.500"
    assert len(lines) == 2 + 50


def test_tags_of_a_checkpoint_as_json(checkpoint: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tags", "--checkpoint", str(checkpoint), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0] == {
        "name": "guitar",
        "category": "instrument",
        "synonym_group": "guitar",
        "threshold": GUITAR_THRESHOLD,
    }


def test_serve_refuses_a_missing_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nothing.safetensors"
    monkeypatch.setenv("TAGGER_CHECKPOINT", str(missing))
    assert main(["serve"]) == 1
    error = capsys.readouterr().err
    assert f"checkpoint not found: {missing}" in error
    assert "TAGGER_CHECKPOINT" in error


def test_the_missing_default_checkpoint_message_explains_what_to_do() -> None:
    message = _missing_checkpoint_message(default_checkpoint_path())
    assert "bundled default checkpoint is missing" in message
    assert "make default-model" in message
    assert "TAGGER_CHECKPOINT" in message
    assert "never serves untrained weights" in message


def test_serve_warns_about_unknown_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TAGGER_MAX_BATCH_WINDOW", "8")  # missing S
    monkeypatch.setenv("TAGGER_CHECKPOINT", str(tmp_path / "nothing.safetensors"))
    assert main(["serve"]) == 1
    assert "TAGGER_MAX_BATCH_WINDOW is not a setting" in capsys.readouterr().err


def test_serve_refuses_bad_settings_and_bad_checkpoints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TAGGER_MAX_BATCH_WINDOWS", "0")
    assert main(["serve"]) == 2
    assert "invalid settings" in capsys.readouterr().err
    monkeypatch.delenv("TAGGER_MAX_BATCH_WINDOWS")
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x00" * 64)
    assert main(["serve", "--checkpoint", str(corrupt)]) == 1
    assert "cannot serve this checkpoint" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_serve_refuses_cuda_where_there_is_none(
    checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "--checkpoint", str(checkpoint), "--device", "cuda"]) == 1
    assert "CUDA is not available" in capsys.readouterr().err
