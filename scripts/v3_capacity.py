"""The cost side of v3's capacity comparison: q2l-small against the wider variant (a benchmark).

For each v3 config, on the same machine, interleaved (A B A B ...) so that a shared machine's
load falls on both alike, and the median over rounds:
  * serving: windows/s of the full model (waveform -> logits), fp32 eager, batch 32, the
    report's speed measure (`training.distill.evaluation.windows_per_second`);
  * training: crops/s of a v3 training step from precomputed log-mels (forward_log_mel,
    BCE-with-logits on soft targets, backward, Adam step), batch 32, the config's bf16 setting.
Inputs are random: the cost of these networks does not depend on the audio. `--checkpoint`
adds trained checkpoints to the serving rounds (for instance v2, from git, against the bundled
v3: the issue's speed budget is 10 % of v2's windows/s).

    nice -n 10 .venv/bin/python scripts/v3_capacity.py [--rounds 3] [--checkpoint PATH ...]
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from model.checkpoint import load_checkpoint
from training.distill.evaluation import windows_per_second
from training.distill.patches import WINDOW_FRAMES
from training.distill.trainer import DistillConfig, build_student

CONFIGS = {
    "q2l-small": Path("training/experiments/default-model-v3.toml"),
    "q2l-wide (1.5x)": Path("training/experiments/default-model-v3-wide.toml"),
}


def training_crops_per_second(config: DistillConfig, steps: int = 3) -> float:
    model = build_student(config).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    log_mel = torch.randn(config.batch_size, 128, WINDOW_FRAMES) * 10 - 40
    targets = torch.rand(config.batch_size, model.n_classes)

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.bf16):
            logits = model.forward_log_mel(log_mel)
        loss = F.binary_cross_entropy_with_logits(logits.float(), targets)
        optimizer.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()

    step()  # warm-up
    started = time.perf_counter()
    for _ in range(steps):
        step()
    return config.batch_size * steps / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--checkpoint", type=Path, action="append", default=[], help="also time this checkpoint"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    configs = {name: DistillConfig.from_toml(path) for name, path in CONFIGS.items()}
    serving: dict[str, list[float]] = {name: [] for name in configs}
    training: dict[str, list[float]] = {name: [] for name in configs}
    trained = {str(path): load_checkpoint(path).model.eval() for path in args.checkpoint}
    served: dict[str, list[float]] = {name: [] for name in trained}
    for _ in range(args.rounds):
        for name, config in configs.items():
            serving[name].append(windows_per_second(build_student(config).eval()))
            training[name].append(training_crops_per_second(config))
        for name, model in trained.items():
            served[name].append(windows_per_second(model))
    print(
        f"{dt.date.today().isoformat()}, {platform.machine()}, {args.threads} threads, "
        f"torch {torch.__version__}, median of {args.rounds} interleaved rounds"
    )
    print("| student | parameters | serving windows/s (fp32) | training crops/s | vs q2l-small |")
    print("|---|---|---|---|---|")
    base = statistics.median(serving["q2l-small"])
    for name, config in configs.items():
        parameters = build_student(config).num_parameters()
        serve, train = statistics.median(serving[name]), statistics.median(training[name])
        print(
            f"| {name} | {parameters / 1e6:.2f} M | {serve:.1f} | {train:.1f} | "
            f"{serve / base:.2f}x |"
        )
    for name, model in trained.items():
        serve = statistics.median(served[name])
        parameters = model.num_parameters()
        print(f"| {name} | {parameters / 1e6:.2f} M | {serve:.1f} | – | {serve / base:.2f}x |")


if __name__ == "__main__":
    main()
