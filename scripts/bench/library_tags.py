"""Tagging a music library three ways on the same folder, in one run: `tagger tag` (JSON Lines
out), `tagger write-tags` (tags into the files) and the beets plugin (`beet import -A`, then
`beet musictagger`), as audio hours per hour of wall time. Each is one command as a user types
it, process start and model loading included; the folder is a fresh copy for each, so nothing
is skipped.

    .venv/bin/python scripts/bench/library_tags.py             # up to 24 tracks of <= 3 min
    .venv/bin/python scripts/bench/library_tags.py --tracks 8  # a quicker look

Needs the fetched music (data/music, as the tests fetch it) and the beets extra. Prints
markdown (docs/library-tags.md has the figures).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import MUSIC, ROOT, cpu_model, manifest, say


def library(scratch: Path, tracks: int) -> tuple[list[Path], float]:
    """Up to `tracks` fetched tracks of at most 3 minutes, by package and name."""
    entries = sorted(
        (e for e in manifest() if float(e["duration_s"]) <= 180.0),  # type: ignore[arg-type]
        key=lambda e: str(e["local_path"]),
    )[:tracks]
    files = [MUSIC / str(entry["local_path"]) for entry in entries]
    seconds = sum(float(entry["duration_s"]) for entry in entries)  # type: ignore[arg-type]
    return files, seconds


def fresh_copy(files: list[Path], folder: Path) -> Path:
    folder.mkdir()
    for index, source in enumerate(files):
        shutil.copy2(source, folder / f"{index:03d}-{source.name}")
    return folder


def timed(command: list[str], env: dict[str, str]) -> float:
    started = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
    wall = time.monotonic() - started
    if result.returncode != 0:
        say(result.stdout[-2000:] + result.stderr[-3000:])
        raise SystemExit(f"failed: {' '.join(command)}")
    return wall


def load_average() -> str:
    return " ".join(f"{value:.1f}" for value in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tracks", type=int, default=24)
    parser.add_argument("--rounds", type=int, default=2, help="each command this often, best kept")
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAGGER_")}
    env["PYTHONPATH"] = str(ROOT)
    python = sys.executable
    walls: dict[str, list[float]] = {}
    loads = [load_average()]
    with tempfile.TemporaryDirectory(prefix="library-bench-") as scratch_name:
        scratch = Path(scratch_name)
        files, seconds = library(scratch, args.tracks)
        say(f"{len(files)} tracks, {seconds / 3600:.3f} h of audio")
        for round_ in range(args.rounds):  # rounds interleave the commands: load drifts alike
            run = scratch / f"round-{round_}"
            run.mkdir()
            for name, wall in commands(run, files, python, env):
                walls.setdefault(name, []).append(wall)
                say(f"round {round_ + 1}: {name}: {wall:.1f} s")
        loads.append(load_average())

    hours = seconds / 3600
    print(f"\n{len(files)} tracks, {hours:.3f} h of audio; {cpu_model()}, {os.cpu_count()} cores")
    print(f"{dt.date.today()}; load average (1, 5, 15 min) {loads[0]} before, {loads[1]} after\n")
    print("| command | wall time (best of rounds) | audio hours per hour | all rounds |")
    print("|---|---|---|---|")
    for name, times in walls.items():
        best = min(times)
        listed = ", ".join(f"{t:.1f} s" for t in times)
        speed = "(imports, does not tag)" if "import" in name else f"{hours * 3600 / best:.1f}"
        print(f"| {name} | {best:.1f} s | {speed} | {listed} |")


def commands(
    run: Path, files: list[Path], python: str, env: dict[str, str]
) -> list[tuple[str, float]]:
    """Each command once on its own fresh copy of the folder: name -> wall seconds."""
    rows: list[tuple[str, float]] = []
    folder = fresh_copy(files, run / "tag")
    out = run / "tags.jsonl"
    command = [python, "-m", "app.cli", "tag", str(folder), "-f", "jsonl", "-o", str(out)]
    rows.append(("`tagger tag` (JSON Lines)", timed([*command, "--no-progress"], env)))

    folder = fresh_copy(files, run / "write")
    command = [python, "-m", "app.cli", "write-tags", str(folder), "--no-progress"]
    rows.append(("`tagger write-tags` (tags into the files)", timed(command, env)))

    folder = fresh_copy(files, run / "beets")
    config = run / "beets-config"
    config.mkdir()
    settings = {
        "directory": str(run / "beets-music"),
        "library": str(run / "library.db"),
        "plugins": "musictagger",
        "import": {"copy": False, "write": False},
    }
    (config / "config.yaml").write_text(json.dumps(settings))
    beets_env = {**env, "BEETSDIR": str(config)}
    imported = timed([python, "-m", "beets", "import", "-A", "-q", str(folder)], beets_env)
    rows.append(("`beet import -A` (no tagging)", imported))
    tagged = timed([python, "-m", "beets", "musictagger"], beets_env)
    rows.append(("`beet musictagger` (the plugin, model in process)", tagged))
    return rows


if __name__ == "__main__":
    main()
