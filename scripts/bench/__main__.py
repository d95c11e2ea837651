"""`make bench`: model, decoding, service, `tagger tag` and the musicnn peer, in one run.

    .venv/bin/python scripts/bench                      # everything, bundled default model
    .venv/bin/python scripts/bench --skip service peer  # parts can be left out

1. Model only (`model_only.py`): windows/s of fp32 eager, the bf16 fast path and int8 at every
   batch size, and each fast path's share of its matmul peak (bf16, int8) measured in this run.
2. Decoding (`decode_formats.py`): audio seconds decoded per CPU second, per format, the
   decoder beside the order it replaced (`reference_decode`).
3. The service end to end (`service.py`): 30 s clips of real music in mp3, ogg and flac at 1 and
   32 clients, with the defaults (it waits for the background compilation to finish first).
4. `tagger tag` (`cli.py`) with the defaults on a folder of the longest fetched tracks and on a
   folder of many short ones, as audio hours per hour; then the same folders with
   `--compile auto` (int8 where the rule chooses it; compile time included in the wall time).
5. The peer (`peer.py`): musicnn's own TensorFlow code and MTT_musicnn, float32 log-mel fix, in
   a throwaway venv beside the repository (created on first use), on the same two folders.

Needs the fetched music (data/music). Prints markdown; `--json` keeps the figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cli
import decode_formats
import model_only
import peer
import service
from common import ROOT, cpu_model, real_clip, say

from app.pipeline.defaults import resolve_threads
from model.quantize import cpu_int8_flags
from model.runtime import cpu_has_native_bf16

PARTS = ("model", "decode", "service", "cli", "peer")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--checkpoint", type=Path, default=ROOT / "model/weights/default.safetensors"
    )
    parser.add_argument("--skip", nargs="*", choices=PARTS, default=[])
    parser.add_argument("--max-batch-windows", type=int, default=64)
    parser.add_argument("--ceiling-seconds", type=float, default=4.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--formats", nargs="+", default=["mp3", "ogg", "flac"])
    parser.add_argument("--requests-per-client", type=int, default=4)
    parser.add_argument("--long-tracks", type=int, default=8)
    parser.add_argument("--short-files", type=int, default=150)
    parser.add_argument("--peer-venv", type=Path, default=peer.DEFAULT_VENV)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    threads = resolve_threads(0)
    torch.set_num_threads(threads)
    started = dt.datetime.now().astimezone()
    load_before = os.getloadavg()
    out: list[str] = []
    figures: dict[str, object] = {"date": started.isoformat(), "threads": threads}

    if "model" not in args.skip:
        model_figures, _ = model_only.measure_model(
            args.checkpoint, args.max_batch_windows, args.ceiling_seconds
        )
        out += [*model_only.report(model_figures), ""]
        figures["model"] = dataclasses.asdict(model_figures)
    if "decode" not in args.skip:
        rows = decode_formats.decode_speeds(30.0)
        out += [
            "Decoding 30 s stereo clips of real music to 16 kHz mono (one thread), before "
            "(resample, then average) and after (average, then resample):",
            "",
            decode_formats.table(rows),
            "",
        ]
        figures["decode"] = rows
    if "service" not in args.skip:
        levels = []
        settings = {
            "max_batch_windows": args.max_batch_windows,
            # Measure the batcher, not the admission bound (which defaults to 32 requests).
            "max_inflight_requests": 4 * max(args.concurrency),
            # All clients share one address here: with the default share (a quarter of the
            # bound) 32 clients sat exactly at the per-client cap, and a client that sent its
            # next request before the server had released the last one's slot got 429 (13 of
            # 96 flac requests on 2026-12-02, docs/performance.md "Decoding").
            "max_client_share": 1.0,
            "request_deadline_s": 3600,
        }
        with service.service(args.checkpoint, settings) as url:
            runtime = service.wait_compiled(url)
            say(f"service runtime: {runtime}")
            figures["service_runtime"] = runtime
            for fmt in args.formats:
                clip = real_clip(fmt, 30.0)
                for concurrency in args.concurrency:
                    levels.append(
                        service.measure(url, clip, fmt, concurrency, args.requests_per_client)
                    )
        out += [
            f"Service end to end (defaults; runtime {runtime['precision']}, "
            f"{runtime['execution']}; int8: {runtime.get('int8_reason')}), 30 s clips of real "
            "music:",
            "",
            "| format | clients | requests | req/s | x real time | p50 ms | p95 ms | p99 ms "
            "| mean batch | decode ms |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for level in levels:
            out.append(
                f"| {level.mode} | {level.concurrency} | {level.requests} | {level.rps:.2f} "
                f"| {level.rps * 30:.0f} | {level.percentile(50):.0f} "
                f"| {level.percentile(95):.0f} | {level.percentile(99):.0f} "
                f"| {level.mean_batch:.1f} | {level.decode_ms:.0f} |"
            )
        out.append("")
        figures["service"] = [
            {
                "format": lv.mode,
                "clients": lv.concurrency,
                "rps": lv.rps,
                "p50_ms": lv.percentile(50),
                "failures": lv.failures,
            }
            for lv in levels
        ]
    if not {"cli", "peer"} <= set(args.skip):
        with tempfile.TemporaryDirectory() as scratch:
            sets = cli.folders(Path(scratch), args.long_tracks, args.short_files)
            rows_out = []
            for name, (folder, seconds, files) in sets.items():
                rates: dict[str, float] = {}
                if "cli" not in args.skip:
                    for label, extra in (
                        ("tagger tag (defaults)", []),
                        ("tagger tag --compile auto", ["--compile", "auto"]),
                    ):
                        wall = cli.run_tag(folder, args.checkpoint, extra)
                        rates[label] = seconds / wall
                        say(f"{label} on {name}: {seconds / wall:.0f} audio h/h")
                if "peer" not in args.skip:
                    result = peer.run_peer(args.peer_venv, files)
                    rates["musicnn peer (TF, MTT_musicnn)"] = float(result["audio_s"]) / float(
                        result["wall_s"]
                    )  # type: ignore[arg-type]
                    say(f"peer on {name}: {rates['musicnn peer (TF, MTT_musicnn)']:.0f} audio h/h")
                rows_out.append((name, len(files), seconds, rates))
            out += ["Folders of real tracks, audio hours tagged per hour (= x real time):", ""]
            labels = list(rows_out[0][3])
            out += [
                "| folder | files | audio h | " + " | ".join(labels) + " |",
                "|---|---|---|" + "---|" * len(labels),
            ]
            for name, count, seconds, rates in rows_out:
                out.append(
                    f"| {name} | {count} | {seconds / 3600:.2f} | "
                    + " | ".join(f"{rates[k]:.0f}" for k in labels)
                    + " |"
                )
            peer_key = "musicnn peer (TF, MTT_musicnn)"
            for name, _, _, rates in rows_out:
                if peer_key in rates and "tagger tag (defaults)" in rates:
                    best = max(v for k, v in rates.items() if k != peer_key)
                    out.append(
                        f"- {name}: best tagger {best / rates[peer_key]:.1f}x the peer (target 5x)"
                    )
            figures["folders"] = rows_out
    load_after = os.getloadavg()
    print(
        f"Measured {started:%Y-%m-%d %H:%M %Z} on {os.cpu_count()} cores ({cpu_model()}; "
        f"int8 dot products: {', '.join(cpu_int8_flags()) or 'none'}; native bf16: "
        f"{'yes' if cpu_has_native_bf16() else 'no'}), "
        f"torch {torch.__version__}, {threads} torch thread(s); load average "
        f"{load_before[0]:.1f} before, {load_after[0]:.1f} after.\n"
    )
    print("\n".join(out))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
