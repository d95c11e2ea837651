"""What computing the embedding beside the scores costs: windows per second of the served
runtime with `RuntimeOptions(embeddings=True)` (what the service and `tagger tag` run) against
`embeddings=False` (scores only), alternated in rounds in one process so machine load hits both.

    nice .venv/bin/python scripts/embedding_cost.py --rounds 5
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from model.checkpoint import load_checkpoint  # noqa: E402
from model.runtime import Runtime, RuntimeOptions  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--checkpoint", type=Path, default=ROOT / "model/weights/default.safetensors"
    )
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_checkpoint(args.checkpoint).model
    runtimes = {
        flag: Runtime(model, torch.device("cpu"), RuntimeOptions(compile="off", embeddings=flag))
        for flag in (False, True)
    }
    windows = 0.1 * torch.randn(args.batch, runtimes[False].window_samples)
    for runtime in runtimes.values():
        runtime(windows)  # warm
    seconds = {False: 0.0, True: 0.0}
    for _ in range(args.rounds):
        for flag, runtime in runtimes.items():
            started = time.perf_counter()
            for _ in range(args.batches):
                runtime(windows)
            seconds[flag] += time.perf_counter() - started
    total = args.rounds * args.batches * args.batch
    rates = {flag: total / s for flag, s in seconds.items()}
    info = runtimes[True].info()
    print(
        f"{info.precision}, channels-last {info.channels_last}, eager, batch {args.batch}, "
        f"{args.threads} thread(s), {total} windows each"
    )
    print(f"scores only:           {rates[False]:.1f} windows/s")
    print(f"scores and embedding:  {rates[True]:.1f} windows/s ({rates[True] / rates[False]:.3f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
