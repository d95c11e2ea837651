"""Fixtures shared by the model tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MUSIC = ROOT / "data" / "music"

PACKAGES = ["nexuiz-music", "wesnoth-1.16-music", "fretsonfire-songs-muldjord"]


@pytest.fixture(scope="session")
def music() -> Path:
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        message = "apt-get/dpkg-deb not available: cannot fetch real music from Debian"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    command = [sys.executable, str(ROOT / "scripts" / "fetch_music.py"), "--dest", str(MUSIC)]
    result = subprocess.run([*command, "--packages", *PACKAGES], capture_output=True, text=True)
    if result.returncode != 0:
        # A machine that never ran `apt-get update` has no package lists yet.
        retry = [*command, "--apt-update", "--packages", *PACKAGES]
        result = subprocess.run(retry, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return MUSIC
