"""`tagger tag` on folders of real tracks, as audio hours tagged per hour of wall time."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from common import MUSIC, ROOT, manifest


def folders(
    scratch: Path, long_tracks: int, short_files: int
) -> dict[str, tuple[Path, float, list[Path]]]:
    """Two folders of links to fetched tracks: the longest ones, and many short ones (5 s to
    a minute). Returns name -> (folder, audio seconds, files)."""
    entries = manifest()
    longest = sorted(entries, key=lambda e: -float(e["duration_s"]))[:long_tracks]  # type: ignore[arg-type]
    short = [e for e in entries if 5.0 <= float(e["duration_s"]) <= 60.0][:short_files]  # type: ignore[arg-type]
    result: dict[str, tuple[Path, float, list[Path]]] = {}
    for name, chosen in (("long tracks", longest), ("short files", short)):
        folder = scratch / name.replace(" ", "-")
        folder.mkdir()
        files = []
        for index, entry in enumerate(chosen):
            source = MUSIC / str(entry["local_path"])
            link = folder / f"{index:04d}-{source.name}"
            link.symlink_to(source.resolve())
            files.append(link)
        seconds = sum(float(e["duration_s"]) for e in chosen)  # type: ignore[arg-type]
        result[name] = (folder, seconds, files)
    return result


def run_tag(folder: Path, checkpoint: Path, extra: list[str]) -> float:
    """Wall seconds of `tagger tag FOLDER` (a subprocess, model loading included)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAGGER_")}
    out = folder.with_suffix(".jsonl")
    command = [sys.executable, "-m", "app.cli", "tag", str(folder), "-f", "jsonl", "-o", str(out)]
    command += ["--checkpoint", str(checkpoint), "--no-progress", *extra]
    started = time.perf_counter()
    subprocess.run(command, cwd=ROOT, env=env, check=True, capture_output=True)
    wall = time.perf_counter() - started
    out.unlink()
    return wall
