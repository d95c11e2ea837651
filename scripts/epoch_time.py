"""How long one MagnaTagATune epoch takes on this machine, per preset (a benchmark, not a test).

Measures, for each preset at its own window length:
  * training: seconds per 100 windows (forward, BCE-with-logits, backward, Adam step) at batch 16
    (the paper's recipe);
  * validation: seconds per 100 windows of forward passes (eval mode, no gradients), batched
    64 windows at a time;
then extrapolates to one MTAT epoch of Won et al.'s split: 15,244 training windows (one random
crop per clip) plus 1,529 validation clips × 16 crops = 24,464 validation windows. The epoch
figures are an extrapolation from the measured windows, not a timed epoch.

Inputs are random waveforms: the cost of these networks does not depend on the audio. Run it
with `nice` on a shared machine:

    nice -n 10 .venv/bin/python scripts/epoch_time.py --presets q2l-base,q2l-small,rescnn
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import time

import torch
import torch.nn.functional as F

from model.zoo import build_model, preset_names

MTAT_TRAIN_CLIPS = 15_244
MTAT_VALID_CLIPS = 1_529
EVAL_CROPS = 16


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def time_preset(
    preset: str, windows: int, batch_size: int, eval_batch: int, device: torch.device
) -> tuple[float, float, float]:
    """(training s/100 windows, validation s/100 windows, parameters in millions)."""
    torch.manual_seed(0)
    model = build_model(preset).to(device)
    length = model.audio.window_samples
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, weight_decay=1e-4)
    batches = max(1, round(windows / batch_size))

    def train_step() -> None:
        waveforms = torch.randn(batch_size, length, device=device) * 0.1
        labels = (torch.rand(batch_size, model.n_classes, device=device) < 0.1).float()
        loss = F.binary_cross_entropy_with_logits(model(waveforms), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()

    model.train()
    train_step()  # warm-up: first-call allocations and kernel selection
    _sync(device)
    started = time.perf_counter()
    for _ in range(batches):
        train_step()
    _sync(device)
    train_per_100 = (time.perf_counter() - started) / (batches * batch_size) * 100

    model.eval()
    eval_batches = max(1, round(windows / eval_batch))
    with torch.inference_mode():
        model(torch.randn(eval_batch, length, device=device) * 0.1)
        _sync(device)
        started = time.perf_counter()
        for _ in range(eval_batches):
            model(torch.randn(eval_batch, length, device=device) * 0.1)
        _sync(device)
    eval_per_100 = (time.perf_counter() - started) / (eval_batches * eval_batch) * 100
    return train_per_100, eval_per_100, model.num_parameters() / 1e6


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--presets", default=",".join(preset_names()))
    parser.add_argument("--windows", type=int, default=96, help="windows timed per phase")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--eval-batch", type=int, default=64)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()
    torch.set_flush_denormal(True)  # as the training command does
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name()
    print(
        f"# {dt.date.today().isoformat()}, {where}, {os.cpu_count()} cores, "
        f"{torch.get_num_threads()} torch threads, torch {torch.__version__}"
    )
    print(
        f"# {args.windows} windows timed per phase; training batch {args.batch_size}, "
        f"validation batch {args.eval_batch}; MTAT epoch = {MTAT_TRAIN_CLIPS:,} training windows"
        f" + {MTAT_VALID_CLIPS:,} × {EVAL_CROPS} validation windows (extrapolated)"
    )
    print(
        "| preset | params | window | train s/100 windows | val s/100 windows "
        "| MTAT epoch: train | + validation | total |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for preset in [p.strip() for p in args.presets.split(",") if p.strip()]:
        train_100, eval_100, params = time_preset(
            preset, args.windows, args.batch_size, args.eval_batch, device
        )
        train_epoch = train_100 * MTAT_TRAIN_CLIPS / 100
        val_epoch = eval_100 * MTAT_VALID_CLIPS * EVAL_CROPS / 100
        window = build_model(preset).audio.window_samples
        print(
            f"| {preset} | {params:.2f} M | {window:,} | {train_100:.1f} | {eval_100:.1f} | "
            f"{_duration(train_epoch)} | {_duration(val_epoch)} | "
            f"{_duration(train_epoch + val_epoch)} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
