"""Decode the corpus once, cut it into windows and record the teacher's scores for each window.

For every source the cache holds, under `<cache>/<source_id>/`:

    windows.npy   int16 (N, WINDOW) the student's input windows (model.inference.split_windows)
    teacher.npy   float32 (N, 50)   MTT_musicnn's sigmoid scores on the same windows
    labels.npy    int8 (N, 50)      ground truth where known (renders' instruments), else -1

The teacher reads the same 59,049-sample windows as the student (231 frames instead of its
native 187; musicnn pools over time, so any length works), which keeps soft labels aligned with
the student's inputs. The log-mel is computed in float32, avoiding musicnn's float16 overflow.
Work is done source by source and `<cache>/index.jsonl` is appended after each, so an
interrupted run resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from model.audio.decode import AudioDecodeError, decode_audio
from model.base import TaggingModel
from model.checkpoint import load_checkpoint
from model.inference import predict_windows, split_windows, window_starts
from model.tags import MTAT_TAG_NAMES
from model.zoo import preset_config
from training.distill.corpus import Source, music_sources, render_sources

TEACHER_WEIGHTS = Path(__file__).resolve().parents[2] / "model/weights/musicnn-mtt.safetensors"
STUDENT_PRESET = "q2l-small"
# The cache holds the default student's input windows, so its audio is what that preset reads.
STUDENT_AUDIO = preset_config(STUDENT_PRESET).audio
WINDOW = STUDENT_AUDIO.window_samples
SAMPLE_RATE = STUDENT_AUDIO.sample_rate
MAX_TRACK_SECONDS = 15 * 60
# Beyond about two minutes a track adds little new to tag; evenly spaced windows keep its variety.
MAX_WINDOWS_PER_SOURCE = 32


MIN_ACTIVE_SECONDS = 0.5  # an instrument counts in a window when it sounds this long in it


def _label_matrix(source: Source, starts: list[int]) -> np.ndarray:
    """(N, C) labels per window: -1 unknown; a render's positive instrument is 1 only in windows
    where it actually sounds (its active spans), 0 where it rests throughout."""
    matrix = np.full((len(starts), len(MTAT_TAG_NAMES)), -1, dtype=np.int8)
    for tag, value in source.labels.items():
        if tag not in MTAT_TAG_NAMES:
            continue
        column = MTAT_TAG_NAMES.index(tag)
        matrix[:, column] = value
        spans = source.active.get(tag)
        if value != 1 or spans is None:
            continue
        for row, start in enumerate(starts):
            begin, end = start / SAMPLE_RATE, (start + WINDOW) / SAMPLE_RATE
            overlap = sum(max(0.0, min(end, b) - max(begin, a)) for a, b in spans)
            matrix[row, column] = int(overlap >= MIN_ACTIVE_SECONDS)
    return matrix


def read_index(cache: Path) -> dict[str, dict[str, object]]:
    index = cache / "index.jsonl"
    if not index.is_file():
        return {}
    with index.open() as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    return {str(row["source_id"]): row for row in rows}


def cache_source(
    source: Source, teacher: TaggingModel, cache: Path, max_windows: int = MAX_WINDOWS_PER_SOURCE
) -> int:
    """Write one source's windows, teacher scores and labels; returns the window count."""
    audio = decode_audio(source.path, sample_rate=SAMPLE_RATE, max_seconds=MAX_TRACK_SECONDS)
    windows = split_windows(torch.from_numpy(audio.samples), WINDOW)
    starts = window_starts(len(audio.samples), WINDOW)
    if len(windows) > max_windows:
        keep = np.linspace(0, len(windows) - 1, max_windows).round().astype(int)
        windows, starts = windows[keep], [starts[i] for i in keep]
    scores = predict_windows(teacher, windows, batch_size=32)
    folder = cache / source.source_id
    folder.mkdir(parents=True, exist_ok=True)
    pcm = (windows.clamp(-1, 1) * 32767).round().to(torch.int16).numpy()
    np.save(folder / "windows.npy", pcm)
    np.save(folder / "teacher.npy", scores.numpy().astype(np.float32))
    np.save(folder / "labels.npy", _label_matrix(source, starts))
    return len(pcm)


def build_cache(
    music_dir: Path, render_dir: Path, cache: Path, threads: int, max_windows: int
) -> None:
    torch.set_num_threads(threads)
    cache.mkdir(parents=True, exist_ok=True)
    teacher = load_checkpoint(TEACHER_WEIGHTS).model
    sources = music_sources(music_dir) + render_sources(render_dir)
    done = read_index(cache)
    todo = [s for s in sources if s.source_id not in done]
    print(f"{len(sources)} sources, {len(done)} cached, {len(todo)} to do")
    started = time.perf_counter()
    with (cache / "index.jsonl").open("a") as index:
        for source in tqdm(todo, unit="file"):
            try:
                n_windows = cache_source(source, teacher, cache, max_windows)
            except AudioDecodeError as error:
                tqdm.write(f"skipped {source.path}: {error}")
                continue
            index.write(json.dumps({**source.to_json(), "n_windows": n_windows}) + "\n")
            index.flush()
    print(f"cached {len(todo)} sources in {time.perf_counter() - started:.0f} s")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Cache windows and teacher scores")
    parser.add_argument("--music", type=Path, default=Path("data/music"))
    parser.add_argument("--rendered", type=Path, default=Path("data/rendered"))
    parser.add_argument("--cache", type=Path, default=Path("data/distill"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-windows-per-source", type=int, default=MAX_WINDOWS_PER_SOURCE)
    args = parser.parse_args(argv)
    build_cache(args.music, args.rendered, args.cache, args.threads, args.max_windows_per_source)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
