"""Decode cost per format, the service's decoder beside the order it replaced, in one run.

For each format (mp3, ogg/vorbis, opus, flac, wav) at 44.1 and 48 kHz stereo (opus: 48 kHz
only, the codec's rate), clips of real music (cut from fetched Debian tracks, encoded here with
PyAV/soundfile, never written to the repository) are decoded to 16 kHz mono twice:

- before: `reference_decode` below, the decoder as it was until 2026-12-02 (resample both
  channels, then average them), kept here so the comparison needs no checkout of old code;
- after: `model.audio.decode.decode_audio`, as the service does (mix to mono first, then
  resample one channel).

The figure is audio seconds decoded per CPU second of this process (one thread), the best of a
few rounds, the two decoders alternating round by round so a noisy neighbour hits both alike.
`max diff` is the largest |after - before| over every sample of the clips: the two orders are
linear, so they agree to float rounding. Run it niced on a shared machine:

    nice -n 10 .venv/bin/python scripts/bench/decode_formats.py
    nice -n 10 .venv/bin/python scripts/bench/decode_formats.py --seconds 120 --json decode.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import CLIP_TRACKS, FORMATS, cpu_model, real_clip, say

from model.audio.decode import CLIP, decode_audio

RATES = (44100, 48000)
TARGET_RATE = 16000


def reference_decode(clip: bytes, sample_rate: int = TARGET_RATE) -> np.ndarray:
    """The old order: resample every channel to `sample_rate` in one-second packed float frames,
    then average the channels and clean each chunk into a new array (model/audio/decode.py
    before 2026-12-02, less its limits and corrupt-packet counting, which cost nothing here)."""
    chunks: list[np.ndarray] = []
    with av.open(io.BytesIO(clip), mode="r", metadata_errors="ignore") as container:
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", rate=sample_rate, frame_size=sample_rate)

        def downmixed(frames: list[av.AudioFrame]) -> None:
            for out in frames:
                channels = len(out.layout.channels)
                mono = out.to_ndarray().reshape(-1, channels).mean(axis=1, dtype=np.float32)
                mono = np.nan_to_num(mono, nan=0.0, posinf=0.0, neginf=0.0)
                chunks.append(np.clip(mono, -CLIP, CLIP, out=mono))

        for packet in container.demux(stream):
            for frame in packet.decode():
                downmixed(resampler.resample(frame))
        downmixed(resampler.resample(None))
    return np.concatenate(chunks)


def current_decode(clip: bytes, sample_rate: int = TARGET_RATE) -> np.ndarray:
    return decode_audio(clip, sample_rate=sample_rate).samples


def cpu_seconds(decode: Callable[[bytes], np.ndarray], clips: list[bytes]) -> float:
    started = time.process_time()
    for clip in clips:
        decode(clip)
    return time.process_time() - started


def compare(clips: list[bytes], seconds: float, rounds: int) -> tuple[float, float, float]:
    """(before, after) audio s per CPU s, best of `rounds` alternating rounds; max |diff|."""
    before = after = float("inf")
    for _ in range(rounds):
        before = min(before, cpu_seconds(reference_decode, clips))
        after = min(after, cpu_seconds(current_decode, clips))
    diff = 0.0
    for clip in clips:
        old, new = reference_decode(clip), current_decode(clip)
        if old.shape != new.shape:
            raise SystemExit(f"the decoders disagree on the length: {old.shape} vs {new.shape}")
        diff = max(diff, float(np.abs(old - new).max()))
    audio = seconds * len(clips)
    return audio / max(before, 1e-9), audio / max(after, 1e-9), diff


def decode_speeds(seconds: float, tracks: int = 3, rounds: int = 5) -> list[dict[str, object]]:
    """One row per format and sample rate: before/after audio s per CPU s, their ratio, the
    largest sample difference, bytes per audio second."""
    rows: list[dict[str, object]] = []
    for fmt in FORMATS:
        for rate in RATES:
            if fmt == "opus" and rate != 48000:
                continue
            clips = [real_clip(fmt, seconds, rate, track=t) for t in range(tracks)]
            current_decode(clips[0])  # warm the codec's tables
            before, after, diff = compare(clips, seconds, rounds)
            rows.append(
                {
                    "format": fmt,
                    "rate": rate,
                    "before_audio_s_per_cpu_s": before,
                    "after_audio_s_per_cpu_s": after,
                    "ratio": after / before,
                    "max_abs_diff": diff,
                    "kb_per_s": sum(map(len, clips)) / (seconds * len(clips)) / 1000,
                }
            )
            say(f"decode {fmt} {rate} Hz: {before:.0f} -> {after:.0f} audio s per CPU s")
    return rows


def table(rows: list[dict[str, object]]) -> str:
    lines = [
        "| format | rate | before: audio s per CPU s | after | after / before "
        "| after: ms per 30 s clip | max abs diff | kB per audio s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        before = float(row["before_audio_s_per_cpu_s"])  # type: ignore[arg-type]
        after = float(row["after_audio_s_per_cpu_s"])  # type: ignore[arg-type]
        lines.append(
            f"| {row['format']} | {int(row['rate']) / 1000:g} kHz "  # type: ignore[call-overload]
            f"| {before:.0f} | {after:.0f} | {after / before:.2f}x | {30_000 / after:.1f} "
            f"| {float(row['max_abs_diff']):.1e} | {float(row['kb_per_s']):.0f} |"  # type: ignore[arg-type]
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=30.0, help="clip length")
    parser.add_argument(
        "--tracks", type=int, default=len(CLIP_TRACKS), help="real tracks per format"
    )
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds per format")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    started = dt.datetime.now().astimezone()
    load_before = os.getloadavg()[0]
    rows = decode_speeds(args.seconds, args.tracks, args.rounds)
    print(
        f"Decode, {args.tracks} x {args.seconds:g} s stereo clips of real music per format to "
        f"16 kHz mono, one thread, measured {started:%Y-%m-%d %H:%M %Z} on {os.cpu_count()} "
        f"cores ({cpu_model()}), load average {load_before:.1f} before, "
        f"{os.getloadavg()[0]:.1f} after:\n"
    )
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps({"date": started.isoformat(), "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
