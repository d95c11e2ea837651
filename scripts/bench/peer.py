"""Set up the musicnn peer in a throwaway venv outside the repository and time it on files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from common import ROOT, say

# Pins from data-sources.md: tensorflow-cpu and librosa resolved normally, tf-keras and musicnn
# without their dependencies (musicnn pins a numpy that has no Python 3.11 wheel).
PEER_PACKAGES = (["tensorflow-cpu==2.21.0", "librosa"], ["tf-keras==2.21.0", "musicnn==0.1.0"])
DEFAULT_VENV = ROOT.parent / "peer-venv"


def ensure_peer(venv: Path) -> Path:
    """The peer venv's python, creating the venv (about 2 GB) on first use."""
    python = venv / "bin" / "python"
    ready = venv / ".music-tagger-peer-ready"
    if ready.exists():
        return python
    if (ROOT in venv.resolve().parents) or venv.resolve() == ROOT:
        raise SystemExit(f"the peer venv must live outside the repository, not in {venv}")
    say(f"setting up the musicnn peer in {venv} (TensorFlow, about 2 GB, once)")
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, *PEER_PACKAGES[0]], check=True)
    subprocess.run([*pip, "--no-deps", *PEER_PACKAGES[1]], check=True)
    ready.write_text("ok\n")
    return python


def run_peer(venv: Path, files: list[Path]) -> dict[str, object]:
    """The peer's figures on `files`: audio seconds, wall seconds (after a warm-up file)."""
    python = ensure_peer(venv)
    env = {
        **os.environ,
        "TF_USE_LEGACY_KERAS": "1",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "CUDA_VISIBLE_DEVICES": "",
    }
    script = Path(__file__).with_name("peer_musicnn.py")
    result = subprocess.run(
        [str(python), str(script), *map(str, files)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"the peer failed: {result.stderr[-2000:]}")
    figures: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    return figures
