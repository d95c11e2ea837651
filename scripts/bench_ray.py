"""`tagger tag` against `tagger tag --engine ray` on the same folder of real music, a two-node
local Ray cluster, and the sizing figures of docs/scale-out.md. Prints figures; asserts nothing.

    python scripts/bench_ray.py                      # about 8 minutes on 2 cores
    python scripts/bench_ray.py --packages nexuiz-music --skip-two-node

1. Sizing: one core decoding (the decode stage's work) and one model actor with one torch thread
   (the scoring stage's work), each in audio hours per hour: decode workers per model actor is
   their ratio.
2. The plain CLI and the Ray engine (a local Ray started by the command, as a user runs it), one
   after the other, each timed from the command's start to its exit.
3. Two nodes: `ray start --head` and a second `ray start --address` on this machine, each with
   its own CPUs and object store, then the Ray engine with two model actors; Ray's stats say on
   how many nodes each stage ran. Both nodes are stopped by their process ids at the end.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from app.pipeline.audio_input import AUDIO_SUFFIXES, decode_content  # noqa: E402
from app.pipeline.defaults import default_checkpoint_path  # noqa: E402
from model.checkpoint import load_checkpoint  # noqa: E402
from model.inference import split_windows  # noqa: E402
from model.runtime import Runtime, RuntimeOptions  # noqa: E402

MUSIC = ROOT / "data" / "music"
TAGGER = [sys.executable, "-m", "app.cli", "tag"]
# Token authentication for every process of the two-node cluster (`ray start` and the driver).
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_AUTH_MODE": "token"}
OBJECT_STORE = str(300 * 1024**2)


def fetch(packages: list[str]) -> list[Path]:
    command = [sys.executable, str(ROOT / "scripts" / "fetch_music.py"), "--dest", str(MUSIC)]
    subprocess.run([*command, "--packages", *packages], check=True, capture_output=True)
    files = [
        path
        for package in packages
        for path in sorted((MUSIC / package).rglob("*"))
        if path.suffix.lower() in AUDIO_SUFFIXES
    ]
    return files


def folder_of(files: list[Path], where: Path) -> Path:
    """One flat folder of links to the files (names prefixed with their package)."""
    folder = where / "songs"
    folder.mkdir()
    for path in files:
        (folder / f"{path.relative_to(MUSIC).parts[0]}--{path.name}").symlink_to(path)
    return folder


def sizing(files: list[Path], seconds_of_audio: float) -> tuple[float, float]:
    """(decode, model) audio hours per hour of one core's CPU time, for decoding and for one
    model actor with one torch thread. CPU time of this thread, not wall time: on a shared
    machine it is what the work costs, whatever else runs."""
    checkpoint = load_checkpoint(default_checkpoint_path())
    audio = checkpoint.model.audio
    decoded, spent, windows = 0.0, 0.0, []
    for path in files:
        data = path.read_bytes()
        started = time.thread_time()
        samples, _ = decode_content(data, audio.sample_rate, None)
        cut = split_windows(samples, audio.window_samples)
        spent += time.thread_time() - started
        decoded += samples.shape[0] / audio.sample_rate
        windows.append(cut)
        if decoded >= seconds_of_audio:
            break
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    runtime = Runtime(checkpoint.model, torch.device("cpu"), RuntimeOptions(compile="off"))
    batch = torch.cat(windows)[:64]
    best = float("inf")
    for _ in range(3):
        started = time.thread_time()  # one torch thread: the work runs in this thread
        runtime(batch)
        best = min(best, time.thread_time() - started)
    torch.set_num_threads(previous)
    model_rate = batch.shape[0] * audio.window_seconds / best
    print(
        f"sizing: decode {decoded / 3600:.3f} h in {spent:.1f} s of CPU time = "
        f"{decoded / spent:.0f} audio h/h; model ({runtime.info().precision}, 1 thread) "
        f"{batch.shape[0] / best:.1f} windows/s = {model_rate:.0f} audio h/h"
    )
    return decoded / spent, model_rate


def timed(command: list[str], label: str) -> tuple[float, float, str]:
    """(wall seconds, audio hours, stderr) of one tagger command."""
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=ENV, cwd=ROOT)
    wall = time.perf_counter() - started
    lines = [line for line in result.stderr.splitlines() if line.startswith("tagger:")]
    if result.returncode not in (0, 1):
        sys.exit(f"{label} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    hours = next(float(m.group(1)) for line in lines if (m := re.search(r"([\d.]+) h of", line)))
    print(f"{label}: {wall:.1f} s from start to exit, {hours / wall * 3600:.1f} audio h/h")
    for line in lines[-3:]:
        print(f"    {line}")
    return wall, hours, result.stderr


def start_node(arguments: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        ["ray", "start", "--block", "--node-ip-address", "127.0.0.1", *arguments],
        env={**ENV, "PATH": f"{Path(sys.executable).parent}:{ENV.get('PATH', '')}"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group, to stop it and nothing else
    )


def stop_node(node: subprocess.Popen[bytes]) -> None:
    node.terminate()  # `ray start --block` drains and stops the processes it started
    try:
        node.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(node.pid, signal.SIGKILL)
        node.wait()


def two_nodes(folder: Path, where: Path, port: int) -> None:
    common = ["--num-cpus", "2", "--object-store-memory", OBJECT_STORE]
    head = start_node(["--head", "--port", str(port), "--include-dashboard=false", *common])
    nodes = [head]
    try:
        time.sleep(10)
        address = f"127.0.0.1:{port}"
        # A second raylet on the same machine needs its own agent port.
        nodes.append(
            start_node(["--address", address, "--dashboard-agent-listen-port", "52366", *common])
        )
        time.sleep(10)
        command = [*TAGGER, "--engine", "ray", "--address", address, "--actors", "2"]
        _, _, log = timed(
            [*command, str(folder), "-o", str(where / "two-nodes"), "--no-progress"],
            "two-node cluster (2 + 2 logical CPUs on this 2-core machine, 2 model actors)",
        )
        stages = [line for line in log.splitlines() if "nodes per stage" in line]
        print(f"  -> {stages[-1] if stages else 'no stage report'}")
    finally:
        for node in reversed(nodes):
            stop_node(node)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--packages", nargs="+", default=["nexuiz-music", "wesnoth-1.16-music"])
    parser.add_argument("--skip-two-node", action="store_true")
    parser.add_argument("--rounds", type=int, default=2, help="alternating runs of each engine")
    parser.add_argument("--port", type=int, default=6390, help="the two-node head's GCS port")
    args = parser.parse_args()
    files = fetch(args.packages)
    print(
        f"{len(files)} files of {', '.join(args.packages)}; {os.cpu_count()} CPUs; {time.ctime()}"
    )
    decode_rate, model_rate = sizing(files, seconds_of_audio=1200)
    print(f"  -> decode workers per model actor (1 thread): {model_rate / decode_rate:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        where = Path(tmp)
        folder = folder_of(files, where)
        # Alternating rounds, so a change in the shared machine's load hits both engines.
        local_runs, ray_runs = [], []
        for round_ in range(1, args.rounds + 1):
            wall, hours, _ = timed(
                [
                    *TAGGER,
                    str(folder),
                    *["-f", "jsonl", "--no-progress"],
                    "-o",
                    str(where / f"p{round_}"),
                ],
                f"round {round_}: tagger tag (local engine)",
            )
            local_runs.append((wall, hours))
            wall, hours, _ = timed(
                [
                    *TAGGER,
                    *["--engine", "ray", "--no-progress"],
                    str(folder),
                    "-o",
                    str(where / f"r{round_}"),
                ],
                f"round {round_}: tagger tag --engine ray (local Ray started by the command)",
            )
            ray_runs.append((wall, hours))
            ratio = (ray_runs[-1][1] / ray_runs[-1][0]) / (local_runs[-1][1] / local_runs[-1][0])
            print(f"  -> round {round_}: Ray engine / local engine throughput {ratio:.2f}x")
        local = sum(h for _, h in local_runs) / sum(w for w, _ in local_runs)
        ray = sum(h for _, h in ray_runs) / sum(w for w, _ in ray_runs)
        print(
            f"  -> all rounds: local {local * 3600:.1f}, Ray {ray * 3600:.1f} audio h/h: "
            f"{ray / local:.2f}x (target >= 0.8x)"
        )
        if not args.skip_two_node:
            two_nodes(folder, where, args.port)


if __name__ == "__main__":
    main()
