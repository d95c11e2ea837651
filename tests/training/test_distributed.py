"""The training command under `torchrun` with two CPU processes (gloo, loopback only)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from tests.training.fakes import tiny_model_args
from training.run import read_log


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_two_processes_end_with_identical_weights(prepared: Path, tmp_path: Path) -> None:
    run = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1"]
    command += ["--nproc_per_node", "2", "--master_addr", "127.0.0.1"]
    command += ["--master_port", str(_free_port())]
    command += ["-m", "training", "train", "--preset", "q2l-small", "--data", str(prepared)]
    command += ["--out", str(run), "--epochs", "1", "--batch-size", "8", "--workers", "0"]
    command += ["--eval-crops", "4", "--no-progress", *tiny_model_args("q2l-small")]
    # gloo picks its interface from the host name; pin it to loopback.
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

    digests = [(run / f"weights-rank{rank}.sha256").read_text().strip() for rank in (0, 1)]
    assert len(digests[0]) == 64
    assert digests[0] == digests[1]
    final = json.loads((run / "metrics.json").read_text())
    assert final["processes"] == 2
    assert final["rank_weight_digests"] == digests
    # Each rank scored half of the clips; the metrics cover all of them.
    assert final["valid"]["n_clips"] == 3
    assert final["test"]["n_clips"] == 9
    assert len(read_log(run / "log.csv")) == 1  # written once, by rank 0
    assert (run / "model.safetensors").is_file()
    assert "processes ended with different weights" not in done.stderr
