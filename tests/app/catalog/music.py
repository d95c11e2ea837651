"""Real music for the catalogue tests: excerpts of Debian tracks, and catalogues built from them.

Two 8-second excerpts (at 20 s and at 60 s) of each of three real tracks of different styles
from Debian's archive (fetched as tests/model/conftest.py fetches them): a catalogue of six
short files tags in seconds, and each excerpt has exactly one other excerpt of the same track.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile

from app.cli.main import main
from model.audio.decode import decode_audio

ROOT = Path(__file__).resolve().parents[3]
MUSIC = ROOT / "data" / "music"
PACKAGES = ["nexuiz-music", "wesnoth-1.16-music", "fretsonfire-songs-muldjord"]
TRACKS = {
    "techno": "nexuiz-music/brainsukker.ogg",
    "orchestral": "wesnoth-1.16-music/traveling_minstrels.ogg",
    "metal": "fretsonfire-songs-muldjord/chaos_god/mix.flac",
}
STARTS = {"a": 20.0, "b": 60.0}
SECONDS = 8.0
RATE = 16000


def fetch_music() -> Path:
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        message = "apt-get/dpkg-deb not available: cannot fetch real music from Debian"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    if all((MUSIC / path).is_file() for path in TRACKS.values()):
        return MUSIC
    command = [sys.executable, str(ROOT / "scripts" / "fetch_music.py"), "--dest", str(MUSIC)]
    result = subprocess.run([*command, "--packages", *PACKAGES], capture_output=True, text=True)
    if result.returncode != 0:
        retry = [*command, "--apt-update", "--packages", *PACKAGES]
        result = subprocess.run(retry, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return MUSIC


def make_excerpts(folder: Path) -> dict[str, Path]:
    """name ("techno-a", "techno-b", ...) -> an 8 s FLAC excerpt of real music in `folder`."""
    music = fetch_music()
    made = {}
    for style, path in TRACKS.items():
        samples = decode_audio(str(music / path), sample_rate=RATE).samples
        for part, start in STARTS.items():
            first = int(start * RATE)
            out = folder / f"{style}-{part}.flac"
            soundfile.write(out, samples[first : first + int(SECONDS * RATE)], RATE)
            made[f"{style}-{part}"] = out
    return made


def build_catalog(folder: Path, database: Path) -> Path:
    """`tagger index build` of a folder with the default model."""
    code = main(["index", "build", str(folder), "--db", str(database), "--no-progress"])
    assert code == 0
    return database
