"""What every part of `make bench` shares: paths, the machine's description, real music clips."""

from __future__ import annotations

import io
import json
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import soundfile

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
from training.fetch_music import RESERVED_PACKAGES  # noqa: E402

MUSIC = ROOT / "data" / "music"
# Clips for the service and the decode benchmark are cut from these (fetched by the tests).
CLIP_TRACKS = [
    "nexuiz-music/brainsukker.ogg",
    "wesnoth-1.16-music/traveling_minstrels.ogg",
    "fretsonfire-songs-muldjord/chaos_god/mix.flac",
]
# (format name, container, codec, suffix)
FORMATS = {
    "mp3": ("mp3", "libmp3lame", ".mp3"),
    "ogg": ("ogg", "vorbis", ".ogg"),  # written by soundfile
    "opus": ("ogg", "libopus", ".opus"),
    "flac": ("flac", "flac", ".flac"),
    "wav": ("wav", "pcm_s16le", ".wav"),
}


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def manifest(music: Path = MUSIC) -> list[dict[str, object]]:
    """The fetched tracks (training.fetch_music's manifest), reserved packages left out."""
    path = music / "manifest.jsonl"
    if not path.exists():
        raise SystemExit(f"{path} is missing: fetch the music first (make music)")
    entries = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [
        e
        for e in entries
        if e["package"] not in RESERVED_PACKAGES and (music / str(e["local_path"])).exists()
    ]


def read_stereo(path: Path, sample_rate: int, seconds: float, offset: float = 0.0) -> np.ndarray:
    """`seconds` of a real track as float32 stereo (2, n) at `sample_rate`, via PyAV."""
    resampler = av.AudioResampler(format="fltp", layout="stereo", rate=sample_rate)
    chunks: list[np.ndarray] = []
    want = round(seconds * sample_rate)
    skip = round(offset * sample_rate)
    with av.open(str(path)) as container:
        for frame in container.decode(audio=0):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray())
            if sum(c.shape[1] for c in chunks) >= skip + want:
                break
    audio = np.concatenate(chunks, axis=1)[:, skip : skip + want]
    if audio.shape[1] < want:  # a short track: loop it
        audio = np.tile(audio, (1, want // max(1, audio.shape[1]) + 1))[:, :want]
    return np.ascontiguousarray(audio, dtype=np.float32)


def encode(audio: np.ndarray, sample_rate: int, fmt: str) -> bytes:
    """Stereo float32 (2, n) encoded as one of FORMATS. Ogg Vorbis goes through soundfile
    (this FFmpeg build's vorbis encoder is experimental); opus needs 48 kHz."""
    buffer = io.BytesIO()
    if fmt == "ogg":
        soundfile.write(buffer, audio.T, sample_rate, format="OGG", subtype="VORBIS")
        return buffer.getvalue()
    container_format, codec, _ = FORMATS[fmt]
    with av.open(buffer, mode="w", format=container_format) as container:
        stream = container.add_stream(codec, rate=sample_rate, layout="stereo")
        assert isinstance(stream, av.AudioStream)
        packed = np.ascontiguousarray(audio.T).reshape(1, -1)  # PyAV converts to the codec's
        frame = av.AudioFrame.from_ndarray(packed, format="flt", layout="stereo")
        frame.sample_rate = sample_rate
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    return buffer.getvalue()


def real_clip(fmt: str, seconds: float, sample_rate: int = 44100, track: int = 0) -> bytes:
    """A `seconds` clip of a real track (from its middle third) encoded as `fmt`."""
    path = MUSIC / CLIP_TRACKS[track % len(CLIP_TRACKS)]
    if not path.exists():
        raise SystemExit(f"{path} is missing: run the model tests or `make music` first")
    return encode(read_stereo(path, sample_rate, seconds, offset=30.0), sample_rate, fmt)


def best_rate(work: Callable[[], float], rounds: int = 5, budget_s: float = 1.0) -> float:
    """Best of `rounds` rounds of units per second; `work` returns the units it did."""
    best = 0.0
    for _ in range(rounds):
        done, started = 0.0, time.perf_counter()
        while done == 0 or time.perf_counter() - started < budget_s:
            done += work()
        best = max(best, done / (time.perf_counter() - started))
    return best
