"""Decode the corpus once, cut it into windows and record every teacher's scores for each window.

For every source the cache holds, under `<cache>/<source_id>/`:

    windows.npy              int16 (N, WINDOW) the student's input windows (split_windows)
    labels.npy               int8 (N, 100)     ground truth where known, else -1, in the
                                               two-vocabulary order (`teachers.TAG_IDS`)
    teacher-<name>.npy       float32 (N, 50)   each teacher's sigmoid scores on those windows

The teachers read the same 59,049-sample windows as the student (231 frames instead of their
native 187), which keeps soft labels aligned with the student's inputs. The log-mel is computed
in float32, avoiding musicnn's float16 overflow. Work is done source by source, and
`<cache>/index.jsonl` is appended once a source has the requested teachers' scores, so an
interrupted run resumes where it stopped, and a teacher requested later is run over the sources
that lack it. The default model's recipe labels validation and test with all four teachers,
chooses (`choose-teachers`), then labels training with only the chosen ones (`--chosen`): a
teacher that lost never labels the training set.
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
from model.zoo import preset_config
from training.distill.corpus import Source, music_sources, render_sources
from training.distill.teachers import (
    TAG_IDS,
    TEACHERS,
    Teacher,
    needed_teachers,
    read_choice,
    teacher_file,
)

STUDENT_PRESET = "q2l-small"
# The cache holds the default student's input windows, so its audio is what that preset reads.
STUDENT_AUDIO = preset_config(STUDENT_PRESET).audio
WINDOW = STUDENT_AUDIO.window_samples
SAMPLE_RATE = STUDENT_AUDIO.sample_rate
MAX_TRACK_SECONDS = 15 * 60
# Beyond about a minute a track adds little new to tag; evenly spaced windows keep its variety,
# and four teachers per window make every window cost four teacher passes.
MAX_WINDOWS_PER_SOURCE = 16


MIN_ACTIVE_SECONDS = 0.5  # a tag counts in a window when what it names sounds this long in it


def _label_matrix(source: Source, starts: list[int]) -> np.ndarray:
    """(N, C) labels per window: -1 unknown; a render's positive tag is 1 only in windows where
    it actually sounds (its active spans), 0 where it rests throughout."""
    matrix = np.full((len(starts), len(TAG_IDS)), -1, dtype=np.int8)
    for tag, value in source.labels.items():
        if tag not in TAG_IDS:
            continue
        column = TAG_IDS.index(tag)
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


def _save(path: Path, array: np.ndarray) -> None:
    """Write atomically, so a killed run never leaves a truncated array that looks finished."""
    partial = path.with_name(path.name + ".partial.npy")
    np.save(partial, array)
    partial.replace(path)


def cache_source(
    source: Source,
    teachers: dict[Teacher, TaggingModel],
    cache: Path,
    max_windows: int = MAX_WINDOWS_PER_SOURCE,
) -> int:
    """Write one source's windows and labels (unless there) and the scores of every teacher
    that lacks them; returns the window count."""
    folder = cache / source.source_id
    if not (folder / "windows.npy").is_file():
        audio = decode_audio(source.path, sample_rate=SAMPLE_RATE, max_seconds=MAX_TRACK_SECONDS)
        windows = split_windows(torch.from_numpy(audio.samples), WINDOW)
        starts = window_starts(len(audio.samples), WINDOW)
        if len(windows) > max_windows:
            keep = np.linspace(0, len(windows) - 1, max_windows).round().astype(int)
            windows, starts = windows[keep], [starts[i] for i in keep]
        folder.mkdir(parents=True, exist_ok=True)
        _save(folder / "labels.npy", _label_matrix(source, starts))
        pcm16 = (windows.clamp(-1, 1) * 32767).round().to(torch.int16).numpy()
        _save(folder / "windows.npy", pcm16)
    pcm = np.load(folder / "windows.npy")
    for teacher, model in teachers.items():
        if teacher_file(folder, teacher).is_file():
            continue
        waveforms = torch.from_numpy(pcm.astype(np.float32) / 32767.0)
        scores = predict_windows(model, waveforms, batch_size=32)
        _save(teacher_file(folder, teacher), scores.numpy().astype(np.float32))
    return len(pcm)


def _complete(cache: Path, source_id: str, teachers: Sequence[Teacher]) -> bool:
    return all(teacher_file(cache / source_id, teacher).is_file() for teacher in teachers)


def build_cache(
    music_dir: Path,
    render_dir: Path,
    cache: Path,
    threads: int,
    max_windows: int,
    teacher_names: Sequence[str] | None = None,
    splits: Sequence[str] | None = None,
) -> None:
    """Cache the sources of the corpus (of `splits`, default all) with the named teachers (all
    four by default)."""
    torch.set_num_threads(threads)
    cache.mkdir(parents=True, exist_ok=True)
    chosen = [t for t in TEACHERS if teacher_names is None or t.name in teacher_names]
    unknown = set(teacher_names or ()) - {t.name for t in TEACHERS}
    if unknown:
        raise SystemExit(f"unknown teachers {sorted(unknown)}; known: {[t.name for t in TEACHERS]}")
    teachers = {teacher: load_checkpoint(teacher.weights).model for teacher in chosen}
    sources = [
        source
        for source in music_sources(music_dir) + render_sources(render_dir)
        if splits is None or source.split in splits
    ]
    done = read_index(cache)
    todo = [
        s for s in sources if s.source_id not in done or not _complete(cache, s.source_id, chosen)
    ]
    print(f"{len(sources)} sources, {len(done)} cached, {len(todo)} to do")
    started = time.perf_counter()
    with (cache / "index.jsonl").open("a") as index:
        for source in tqdm(todo, unit="file"):
            try:
                n_windows = cache_source(source, teachers, cache, max_windows)
            except AudioDecodeError as error:
                tqdm.write(f"skipped {source.path}: {error}")
                continue
            index.write(json.dumps({**source.to_json(), "n_windows": n_windows}) + "\n")
            index.flush()
    print(f"cached {len(todo)} sources in {time.perf_counter() - started:.0f} s")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Cache windows and every teacher's scores")
    parser.add_argument("--music", type=Path, default=Path("data/music"))
    parser.add_argument("--rendered", type=Path, default=Path("data/rendered"))
    parser.add_argument("--cache", type=Path, default=Path("data/distill"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-windows-per-source", type=int, default=MAX_WINDOWS_PER_SOURCE)
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--teachers",
        nargs="+",
        default=None,
        help=f"only these teachers (default: all of {[t.name for t in TEACHERS]})",
    )
    which.add_argument(
        "--chosen",
        action="store_true",
        help="only the teachers the recorded choice needs (run choose-teachers first)",
    )
    parser.add_argument(
        "--splits", nargs="+", choices=["train", "valid", "test"], help="only these splits"
    )
    args = parser.parse_args(argv)
    names = needed_teachers(read_choice(args.cache)["choices"]) if args.chosen else args.teachers
    build_cache(
        args.music,
        args.rendered,
        args.cache,
        args.threads,
        args.max_windows_per_source,
        names,
        args.splits,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
