"""`tagger compile`: builds the service's artifact into the compile cache ahead of time, finds
it there the second time, and refuses bad input with exit status 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
MUSICNN = ROOT / "model" / "weights" / "musicnn-mtt.safetensors"


def tagger(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args], capture_output=True, text=True, cwd=ROOT
    )


@pytest.mark.slow
def test_compile_builds_once_then_finds_the_artifact(tmp_path: Path) -> None:
    cache = tmp_path / "compiled"
    args = ["compile", "--checkpoint", str(MUSICNN), "--precision", "fp32"]
    first = tagger(*args, "--cache-dir", str(cache), "--json")
    assert first.returncode == 0, first.stderr[-2000:]
    built = json.loads(first.stdout)
    assert built["origin"] == "built"
    assert built["key"]["precision"] == "fp32"
    assert built["key"]["embeddings"] is True  # the service always computes embeddings
    assert built["parity_max_abs_diff"] <= 1e-3
    entry = Path(built["artifact"])
    assert entry.parent == cache
    assert (entry / "manifest.json").is_file()

    second = tagger(*args, "--cache-dir", str(cache), "--json")
    assert second.returncode == 0, second.stderr[-2000:]
    assert json.loads(second.stdout)["origin"] == "cache"

    # A damaged package is rebuilt, never used.
    package = entry / "batch-any.pt2"
    package.write_bytes(package.read_bytes()[:-100])
    third = tagger(*args, "--cache-dir", str(cache), "--json")
    assert third.returncode == 0, third.stderr[-2000:]
    assert json.loads(third.stdout)["origin"] == "built"
    assert "does not match its manifest" in third.stderr


def test_compile_refuses_a_missing_checkpoint(tmp_path: Path) -> None:
    result = tagger("compile", "--checkpoint", str(tmp_path / "none.safetensors"))
    assert result.returncode == 2
    assert "tagger compile:" in result.stderr
    assert "Traceback" not in result.stderr


def test_compile_refuses_bad_settings() -> None:
    result = tagger("compile", "--max-batch-windows", "0")
    assert result.returncode == 2
    assert "invalid settings" in result.stderr
