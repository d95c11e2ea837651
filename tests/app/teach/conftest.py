"""Fixtures of the teaching tests: real music laid out as a folder per tag, and one tag set
taught from it by `tagger teach` (shared, as teaching takes a while on 2 cores).

Examples are 12-second FLAC excerpts (four windows) of real tracks from two Debian packages
of clearly different styles: nexuiz's electronic tracks (`techno/`) and wesnoth's orchestral
score (`orchestral/`), six different tracks each.
"""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import soundfile

from app.cli.main import main
from model.audio.decode import decode_audio
from tests.app.catalog.music import fetch_music

ROOT = Path(__file__).resolve().parents[3]
V1 = ROOT / "model" / "weights" / "default-v1.safetensors"
TRACKS = {
    "techno": [
        "nexuiz-music/beast-of-insanity.ogg",
        "nexuiz-music/stairs.ogg",
        "nexuiz-music/brokenlight.ogg",
        "nexuiz-music/desert3.ogg",
        "nexuiz-music/digital-pursuit.ogg",
        "nexuiz-music/brainsukker.ogg",
    ],
    "orchestral": [
        "wesnoth-1.16-music/elf-land.ogg",
        "wesnoth-1.16-music/battle.ogg",
        "wesnoth-1.16-music/breaking_the_chains.ogg",
        "wesnoth-1.16-music/traveling_minstrels.ogg",
        "wesnoth-1.16-music/sad.ogg",
        "wesnoth-1.16-music/battle-epic.ogg",
    ],
}
RATE = 16000
SECONDS = 12.0
STEPS = "25"  # query training steps: enough to learn two very different styles


def excerpt(source: Path, out: Path) -> Path:
    samples = decode_audio(str(source), sample_rate=RATE).samples
    start = min(len(samples) // 3, max(0, len(samples) - int(SECONDS * RATE)))
    out.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(out, samples[start : start + int(SECONDS * RATE)], RATE, format="FLAC")
    return out


@pytest.fixture(scope="session")
def examples(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """EXAMPLES/techno/*.flac and EXAMPLES/orchestral/*.flac."""
    music = fetch_music()
    root = tmp_path_factory.mktemp("examples")
    for tag, tracks in TRACKS.items():
        for track in tracks:
            excerpt(music / track, root / tag / (Path(track).stem + ".flac"))
    return root


@pytest.fixture(scope="session")
def teach_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("teach-cache")


def teach(*args: str | Path, cache: Path) -> int:
    return main(
        [
            "teach",
            *map(str, args),
            "--checkpoint", str(V1),
            "--cache", str(cache),
            "--folds", "3",
            "--query-steps", STEPS,
            "--no-progress",
        ]
    )  # fmt: skip


@dataclass(frozen=True)
class Taught:
    path: Path
    report: dict[str, dict[str, object]]
    stdout: str
    stderr: str


@pytest.fixture(scope="session")
def taught(examples: Path, teach_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Taught:
    folder = tmp_path_factory.mktemp("taught")
    path, report = folder / "styles.safetensors", folder / "report.json"
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = teach(examples, "--output", path, "--report", report, cache=teach_cache)
    assert code == 0, err.getvalue()
    return Taught(path, json.loads(report.read_text()), out.getvalue(), err.getvalue())
