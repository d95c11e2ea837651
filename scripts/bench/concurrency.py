"""Decode workers under load: the service with the old default (two decode processes) beside
the new one (from the cores: one on up to 4), in one run.

Both services run at once from the start (the idle one costs nothing), each with the bench's
admission settings; for every format the levels alternate between them round by round, so a
noisy neighbour hits both alike. Beside the wall-time figures, each level's CPU seconds spent
by the service (its server and decode worker processes, from /proc) give audio seconds per
service CPU second: what the setting costs, which other people's load moves far less than the
wall time it buys (on a shared machine more processes also win a larger share of the CPU).

A last level sends 32 clients (all from one address, as every bench client is) to each: with
the default per-client share, a quarter of the 128 admission slots, that is exactly the cap,
and the failures' status codes show what the cap does there; `--client-share 1` lifts it.

    nice -n 10 .venv/bin/python scripts/bench/concurrency.py
    nice -n 10 .venv/bin/python scripts/bench/concurrency.py --client-share 1.0 --rounds 2
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import service
from common import ROOT, cpu_model, real_clip, say

from app.pipeline.defaults import available_cores, default_decode_workers


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--checkpoint", type=Path, default=ROOT / "model/weights/default.safetensors"
    )
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--formats", nargs="+", default=["mp3", "ogg", "flac"])
    parser.add_argument("--requests-per-client", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds per format")
    parser.add_argument("--old-decoders", type=int, default=2, help="the old default")
    parser.add_argument("--cap-check-clients", type=int, default=32, help="0: no cap check")
    parser.add_argument(
        "--client-share",
        type=float,
        help="TAGGER_MAX_CLIENT_SHARE of both services (default: the service's, 0.25)",
    )
    args = parser.parse_args()
    started = dt.datetime.now().astimezone()
    load_before = os.getloadavg()[0]
    configs = {
        f"old default ({args.old_decoders} decoders)": args.old_decoders,
        f"new default ({default_decode_workers()} decoder(s))": default_decode_workers(),
    }
    settings: dict[str, object] = {
        "max_batch_windows": 64,
        "max_inflight_requests": 128,
        "request_deadline_s": 3600,
    }
    if args.client_share is not None:
        settings["max_client_share"] = args.client_share
    results: dict[tuple[str, str], list[service.Level]] = {}
    cap_levels: dict[str, service.Level] = {}
    cpu_per_request: dict[tuple[str, str], float] = {}
    with contextlib.ExitStack() as stack:
        urls = {}
        for label, decoders in configs.items():
            url = stack.enter_context(
                service.service(args.checkpoint, {**settings, "max_concurrent_decodes": decoders})
            )
            say(f"{label}: runtime {service.wait_compiled(url)}")
            urls[label] = url
        for fmt in args.formats:
            clip = real_clip(fmt, 30.0)
            for _ in range(args.rounds):
                for label, url in urls.items():
                    say(label)
                    cpu = service.tree_cpu_seconds(service.PIDS[url])
                    level = service.measure(url, clip, fmt, args.clients, args.requests_per_client)
                    cpu = service.tree_cpu_seconds(service.PIDS[url]) - cpu
                    # measure() sends one warm-up request per client first
                    answered = args.clients + level.requests + level.failures
                    cpu_per_request[(fmt, label)] = min(
                        cpu / answered, cpu_per_request.get((fmt, label), float("inf"))
                    )
                    results.setdefault((fmt, label), []).append(level)
        if args.cap_check_clients:
            clip = real_clip("flac", 30.0)
            for label, url in urls.items():
                cap_levels[label] = service.measure(url, clip, "flac", args.cap_check_clients, 3)
    print(
        f"Service end to end, {args.clients} clients, 30 s clips of real music, measured "
        f"{started:%Y-%m-%d %H:%M %Z} on {available_cores()} cores ({cpu_model()}), load average "
        f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after; best of {args.rounds} "
        "alternating rounds (service CPU: the server and its decode workers):\n"
    )
    labels = list(configs)
    print(
        "| format | "
        + " | ".join(
            f"{label}: x real time | p50 ms | decode ms | audio s per service CPU s"
            for label in labels
        )
        + " | new / old, x real time | new / old, per CPU s |"
    )
    print("|---|" + "---|---|---|---|" * len(labels) + "---|---|")
    for fmt in args.formats:
        cells, rates, per_cpu = [], [], []
        for label in labels:
            best = max(results[(fmt, label)], key=lambda lv: lv.rps)
            rates.append(best.rps * 30)
            per_cpu.append(30 / cpu_per_request[(fmt, label)])
            cells.append(
                f"{best.rps * 30:.0f} | {best.percentile(50):.0f} | {best.decode_ms:.0f} "
                f"| {per_cpu[-1]:.0f}"
            )
        print(
            f"| {fmt} | "
            + " | ".join(cells)
            + f" | {rates[1] / rates[0]:.2f}x | {per_cpu[1] / per_cpu[0]:.2f}x |"
        )
    failures = {
        label: sum(lv.failures for fmt in args.formats for lv in results[(fmt, label)])
        for label in labels
    }
    print(f"\nFailed requests in those levels: {failures}")
    for label, level in cap_levels.items():
        print(
            f"\n{args.cap_check_clients} clients from one address, flac, {label}, client share "
            f"{args.client_share or 'default'}: "
            f"{level.requests} answered 200, failures by status {level.statuses or 'none'}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
