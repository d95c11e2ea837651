"""Teacher windows/s for v3's labelling (`python -m training label-patches --compile`).

    .venv/bin/python scripts/bench/teachers.py [--threads 1] [--windows 96]

Each of the four musicnn teachers on the same random windows (one student window each, batches
of 32, channels-last, as `label-patches` runs them): eager fp32, then `torch.compile`d fp32
(compile time apart), with the largest difference of the probabilities to eager. Prints
markdown.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from scripts.bench.common import cpu_model
from training.distill.cache import WINDOW
from training.distill.patches import TEACHER_BATCH, prepare_teacher, teacher_scores
from training.distill.teachers import TEACHERS


def _rate(model: torch.nn.Module, windows: torch.Tensor) -> tuple[float, torch.Tensor]:
    with torch.inference_mode():
        started = time.perf_counter()
        scores = teacher_scores(model, windows)  # type: ignore[arg-type]
    return len(windows) / (time.perf_counter() - started), scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--windows", type=int, default=96)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    windows = 0.1 * torch.randn(args.windows, WINDOW, generator=torch.Generator().manual_seed(0))
    print(f"{cpu_model()}, {args.threads} thread(s), batches of {TEACHER_BATCH}\n")
    print("| teacher | eager windows/s | compiled windows/s | ratio | compile s | max diff |")
    print("|---|---|---|---|---|---|")
    for teacher in TEACHERS:
        eager = prepare_teacher(teacher, compile_graphs=False)
        _rate(eager, windows[:TEACHER_BATCH])  # warm-up
        eager_rate, reference = _rate(eager, windows)
        compiled = prepare_teacher(teacher, compile_graphs=True)
        started = time.perf_counter()
        _rate(compiled, windows[:TEACHER_BATCH])
        compile_s = time.perf_counter() - started
        compiled_rate, scores = _rate(compiled, windows)
        diff = float((scores - reference).abs().max())
        print(
            f"| {teacher.name} | {eager_rate:.1f} | {compiled_rate:.1f} | "
            f"{compiled_rate / eager_rate:.2f}x | {compile_s:.0f} | {diff:.1e} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
