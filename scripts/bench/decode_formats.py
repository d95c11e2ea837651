"""Decode cost per format: audio seconds decoded per second by the service's decoder.

For each format (mp3, ogg/vorbis, opus, flac, wav) at 44.1 and 48 kHz stereo (opus: 48 kHz
only, the codec's rate), a clip of real music (cut from a fetched Debian track, encoded here
with PyAV/soundfile, never written to the repository) is decoded by
`model.audio.decode.decode_audio` to 16 kHz mono, as the service does: best of five rounds,
one thread, in this process. Run it before and after a change to the decoder:

    .venv/bin/python scripts/bench/decode_formats.py
    .venv/bin/python scripts/bench/decode_formats.py --seconds 120 --json decode.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import FORMATS, best_rate, cpu_model, real_clip, say

from model.audio.decode import decode_audio

RATES = (44100, 48000)


def decode_speeds(seconds: float) -> list[dict[str, object]]:
    """One row per format and sample rate: audio seconds per second, bytes per audio second."""
    rows: list[dict[str, object]] = []
    for fmt in FORMATS:
        for rate in RATES:
            if fmt == "opus" and rate != 48000:
                continue
            clip = real_clip(fmt, seconds, rate)

            def work(clip: bytes = clip) -> float:
                decode_audio(clip, sample_rate=16000)
                return seconds

            speed = best_rate(work, rounds=5, budget_s=0.5)
            rows.append(
                {
                    "format": fmt,
                    "rate": rate,
                    "audio_s_per_s": speed,
                    "kb_per_s": len(clip) / seconds / 1000,
                }
            )
            say(f"decode {fmt} {rate} Hz: {speed:.0f} audio s/s")
    return rows


def table(rows: list[dict[str, object]]) -> str:
    lines = [
        "| format | rate | audio s per s | ms per 30 s clip | kB per audio s |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        speed = float(row["audio_s_per_s"])  # type: ignore[arg-type]
        lines.append(
            f"| {row['format']} | {int(row['rate']) / 1000:g} kHz | {speed:.0f} "  # type: ignore[call-overload]
            f"| {30_000 / speed:.1f} | {float(row['kb_per_s']):.0f} |"  # type: ignore[arg-type]
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=30.0, help="clip length")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = dt.datetime.now().astimezone()
    rows = decode_speeds(args.seconds)
    print(
        f"Decode, {args.seconds:g} s stereo clips of real music to 16 kHz mono, measured "
        f"{started:%Y-%m-%d %H:%M %Z} on {os.cpu_count()} cores ({cpu_model()}), load average "
        f"{os.getloadavg()[0]:.1f}:\n"
    )
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps({"date": started.isoformat(), "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
