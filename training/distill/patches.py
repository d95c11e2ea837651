"""The v3 cache: every part of every track, log-mels computed once, teachers on a finer hop.

    python -m training label-patches [--music data/music] [--rendered data/rendered]
        [--cache data/v3] [--splits valid train test] [--teachers ... | --chosen]

v2 kept at most 16 windows per track. v3 keeps everything, under `<cache>/<source_id>/`:

    mel.npy                  float16 (frames, n_mels)  the student's un-normalised log-mel of
                                                       the whole track (frontend.log_mel), read
                                                       memory-mapped and cropped by training
    starts.npy               int64 (rows,)             sample offset of each labelled row below
training split, every `TRAIN_STRIDE`-th patch (a window every half window; a patch starts every
`HOP_FRAMES` mel frames, a quarter window, and sources labelled before the stride was 2 keep all
of their patches: `starts.npy` says which rows a source has):
    patch-labels.npy         int8 (P, 100)    ground truth where known, else -1
    patch-teacher-<name>.npy float32 (P, 50)  each requested teacher's scores per row
valid and test, every `EVAL_STRIDE`-th patch (back-to-back windows 1 mel frame apart, covering
the whole track but its last, shorter-than-a-window seconds); validation keeps at most
`MAX_VALID_WINDOWS` of them per track, evenly spaced, as v2 did (it is scored every epoch and
labelled by all four teachers; the test split, the gate's, keeps every window):
    windows.npy, labels.npy, teacher-<name>.npy   the v2 cache's files, so `choose-teachers`,
                                                  `report` and `load_split` read them unchanged

A patch is the student's window (59,049 samples, 231 mel frames); patch p starts at sample
`p * HOP_SAMPLES`, a multiple of the mel hop, so its log-mel is rows `[p * HOP_FRAMES, p *
HOP_FRAMES + 231)` of `mel.npy` (up to the STFT's padding of the edge frames). Training
crops at any frame offset get the teachers' scores of the patches they cover (`crops`).

Sources are done one by one and `<cache>/index.jsonl` gains a row once one has every requested
teacher, so an interrupted run resumes where it stopped. Training sources are visited in a
fixed shuffled order (by source id) so that a partly labelled training split is a fair sample
of packages and renders, and training can start before labelling ends.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import cast

import numpy as np
import torch
from tqdm import tqdm

from model.audio.decode import AudioDecodeError, decode_audio
from model.base import TaggingModel
from model.checkpoint import load_checkpoint
from model.frontend import MelFrontEnd
from model.inference import predict_windows
from model.zoo import preset_config
from training.distill.cache import (
    MAX_TRACK_SECONDS,
    SAMPLE_RATE,
    STUDENT_PRESET,
    WINDOW,
    _label_matrix,
    _save,
    read_index,
)
from training.distill.corpus import Source, _source_id, music_sources, render_sources
from training.distill.teachers import TEACHERS, Teacher, needed_teachers, read_choice, teacher_file

_STUDENT = preset_config(STUDENT_PRESET)
MEL_HOP = _STUDENT.mel.hop_length  # type: ignore[attr-defined]
WINDOW_FRAMES = _STUDENT.mel.n_frames(WINDOW)  # type: ignore[attr-defined]
HOP_FRAMES = 58  # a quarter window (231 / 4 = 57.75), rounded so 4 hops cover a window
HOP_SAMPLES = HOP_FRAMES * MEL_HOP
TEACHER_BATCH = 32
EVAL_STRIDE = 4  # valid/test: every 4th patch, windows back to back
# Training: every 2nd patch, a window every half window. Every quarter window, 4 teachers would
# take 2.8 h of a quiet 2-core machine for the training split (278,740 passes at about 28/s).
TRAIN_STRIDE = 2
MAX_VALID_WINDOWS = 16
TRAIN_SPLIT = "train"


def patch_starts(n_samples: int) -> list[int]:
    """Sample offsets of the patches of a track: every full window on the hop (one padded
    window for a track shorter than a window)."""
    if n_samples <= WINDOW:
        return [0]
    return [p * HOP_SAMPLES for p in range(1 + (n_samples - WINDOW) // HOP_SAMPLES)]


def patch_teacher_file(folder: Path, teacher: Teacher) -> Path:
    return folder / f"patch-teacher-{teacher.name}.npy"


def _is_train(source: Source) -> bool:
    return source.split == TRAIN_SPLIT


def _scores_file(folder: Path, teacher: Teacher, source: Source) -> Path:
    return (
        patch_teacher_file(folder, teacher) if _is_train(source) else teacher_file(folder, teacher)
    )


def _complete(folder: Path, source: Source, teachers: Sequence[Teacher]) -> bool:
    return (folder / "mel.npy").is_file() and all(
        _scores_file(folder, teacher, source).is_file() for teacher in teachers
    )


def train_rows(n_patches: int) -> list[int]:
    """Which patches of a training track are labelled: every `TRAIN_STRIDE`-th."""
    return list(range(0, n_patches, TRAIN_STRIDE))


def eval_rows(n_patches: int, max_windows: int | None) -> list[int]:
    """Which patches a valid/test track is evaluated on: every `EVAL_STRIDE`-th, at most
    `max_windows` of them (evenly spaced) when given."""
    rows = list(range(0, n_patches, EVAL_STRIDE))
    if max_windows is not None and len(rows) > max_windows:
        keep = np.linspace(0, len(rows) - 1, max_windows).round().astype(int)
        rows = [rows[k] for k in keep]
    return rows


def label_source(
    source: Source, teachers: dict[Teacher, TaggingModel], frontend: MelFrontEnd, cache: Path
) -> dict[str, int]:
    """Write one source's log-mel, labels and every missing teacher's scores; returns counts."""
    folder = cache / source.source_id
    folder.mkdir(parents=True, exist_ok=True)
    audio = decode_audio(source.path, sample_rate=SAMPLE_RATE, max_seconds=MAX_TRACK_SECONDS)
    waveform = torch.from_numpy(audio.samples)
    if len(waveform) < WINDOW:
        waveform = torch.nn.functional.pad(waveform, (0, WINDOW - len(waveform)))
    starts = patch_starts(len(waveform))
    # Unfolding is a view: no copy of the (P, WINDOW) patches is ever made.
    patches = waveform.unfold(0, WINDOW, HOP_SAMPLES)[: len(starts)]
    if (folder / "starts.npy").is_file():  # a source begun before: the rows it has
        rows = (np.load(folder / "starts.npy") // HOP_SAMPLES).tolist()
    elif _is_train(source):
        rows = train_rows(len(starts))
    else:
        rows = eval_rows(len(starts), MAX_VALID_WINDOWS if source.split == "valid" else None)
    starts = [starts[k] for k in rows]
    patches = patches[rows]
    if not (folder / "mel.npy").is_file():
        with torch.inference_mode():
            log_mel = frontend.log_mel(waveform.unsqueeze(0))[0].T  # (frames, n_mels)
        _save(folder / "mel.npy", log_mel.numpy().astype(np.float16))
    if not (folder / "starts.npy").is_file():
        _save(folder / "starts.npy", np.asarray(starts, dtype=np.int64))
    labels_name = "patch-labels.npy" if _is_train(source) else "labels.npy"
    if not (folder / labels_name).is_file():
        _save(folder / labels_name, _label_matrix(source, starts))
    if not _is_train(source) and not (folder / "windows.npy").is_file():
        pcm16 = (patches.clamp(-1, 1) * 32767).round().to(torch.int16).numpy()
        _save(folder / "windows.npy", pcm16)
    for teacher, model in teachers.items():
        target = _scores_file(folder, teacher, source)
        if not target.is_file():
            _save(target, teacher_scores(model, patches).numpy().astype(np.float32))
    n_frames = int(np.load(folder / "mel.npy", mmap_mode="r").shape[0])
    return {"n_patches": len(starts), "n_frames": n_frames}


def teacher_scores(model: TaggingModel, patches: torch.Tensor) -> torch.Tensor:
    """(P, classes) a teacher's probabilities, in batches of exactly `TEACHER_BATCH` windows
    (the last one zero-padded), so that a compiled teacher sees a single input shape."""
    n = len(patches)
    padded = torch.nn.functional.pad(patches, (0, 0, 0, -n % TEACHER_BATCH))
    return predict_windows(model, padded, batch_size=TEACHER_BATCH)[:n]


def prepare_teacher(teacher: Teacher, compile_graphs: bool) -> TaggingModel:
    # channels_last: the vgg teachers ran 1.5x faster on one CPU thread with the same outputs
    # (max |difference| 4e-7 of the probabilities; 2026-12-07, batch 16); musicnn: no change.
    model = load_checkpoint(teacher.weights).model.eval().to(memory_format=torch.channels_last)
    if compile_graphs:
        # Inductor fuses each convolution with its batch norm and ReLU: 2.1x (musicnn) and
        # 1.7x (vgg) the eager windows/s on one thread, the same outputs
        # (fp32, max |difference| 2.4e-7; 2026-12-07, Zen 4, `scripts/bench/teachers.py`).
        model = cast(TaggingModel, torch.compile(model, dynamic=False))
    return model


def _ordered(sources: list[Source], splits: Sequence[str]) -> list[Source]:
    """In the order of `splits`; within a split by source id (a fixed shuffle of packages)."""
    rank = {split: k for k, split in enumerate(splits)}
    return sorted(sources, key=lambda s: (rank[s.split], s.source_id))


def label_patches(
    music_dir: Path,
    render_dir: Path,
    cache: Path,
    splits: Sequence[str],
    teacher_names: Sequence[str] | None = None,
    threads: int = 2,
    shard: tuple[int, int] = (0, 1),
    compile_graphs: bool = False,
) -> int:
    """Label every source of `splits` (in that order) with the named teachers (default all
    four); returns how many sources were labelled now.

    `shard` (k, n) takes every n-th source from the k-th (in the fixed order), so n processes
    (one per core) label one split together; `compile_graphs` runs the teachers through
    `torch.compile` (worth its minute of compiling from about 20 sources on)."""
    torch.set_num_threads(threads)
    cache.mkdir(parents=True, exist_ok=True)
    unknown = set(teacher_names or ()) - {t.name for t in TEACHERS}
    if unknown:
        raise SystemExit(f"unknown teachers {sorted(unknown)}; known: {[t.name for t in TEACHERS]}")
    chosen = [t for t in TEACHERS if teacher_names is None or t.name in teacher_names]
    sources = [
        s for s in music_sources(music_dir) + render_sources(render_dir) if s.split in splits
    ]
    done = read_index(cache)
    # Shards are cut from every source (not from those left), so a shard restarted alone
    # still takes the same sources as before and never the other shard's.
    todo = [
        s
        for s in _ordered(sources, splits)[shard[0] :: shard[1]]
        if s.source_id not in done or not _complete(cache / s.source_id, s, chosen)
    ]
    print(f"{len(sources)} sources in {list(splits)}, {len(todo)} to label", flush=True)
    if not todo:
        return 0
    teachers = {teacher: prepare_teacher(teacher, compile_graphs) for teacher in chosen}
    frontend = MelFrontEnd(_STUDENT.audio, _STUDENT.mel).eval()  # type: ignore[attr-defined]
    started = time.perf_counter()
    labelled = 0
    with (cache / "index.jsonl").open("a") as index:
        for source in tqdm(todo, unit="file", mininterval=30):
            try:
                counts = label_source(source, teachers, frontend, cache)
            except AudioDecodeError as error:
                tqdm.write(f"skipped {source.path}: {error}")
                continue
            row = {**source.to_json(), **counts, "teachers": [t.name for t in chosen]}
            index.write(json.dumps(row) + "\n")
            index.flush()
            labelled += 1
    print(f"labelled {labelled} sources in {time.perf_counter() - started:.0f} s", flush=True)
    return labelled


def _durations(music_dir: Path, render_dir: Path) -> dict[str, float]:
    """Seconds of audio per source id, from the fetch and render manifests."""
    seconds: dict[str, float] = {}
    for directory, kind, key in (
        (music_dir, "music", "local_path"),
        (render_dir, "render", "path"),
    ):
        manifest = directory / "manifest.jsonl"
        if manifest.is_file():
            for line in manifest.read_text().splitlines():
                if line.strip():
                    row = json.loads(line)
                    seconds[_source_id(kind, row[key])] = float(row.get("duration_s", 0.0))
    return seconds


def plan(
    music_dir: Path,
    render_dir: Path,
    cache: Path,
    splits: Sequence[str],
    teacher_names: Sequence[str] | None = None,
) -> list[str]:
    """Per split: sources, hours, and the teacher passes (one teacher on one window) still to
    do with the named teachers; counted from the manifests' durations, nothing is decoded."""
    chosen = [t for t in TEACHERS if teacher_names is None or t.name in teacher_names]
    seconds = _durations(music_dir, render_dir)
    sources = [
        s for s in music_sources(music_dir) + render_sources(render_dir) if s.split in splits
    ]
    lines = []
    for split in splits:
        members = [s for s in sources if s.split == split]
        total = passes = 0
        for source in members:
            n_samples = round(seconds.get(source.source_id, 0.0) * SAMPLE_RATE)
            folder = cache / source.source_id
            patches = len(patch_starts(n_samples))
            if (folder / "starts.npy").is_file():
                rows = len(np.load(folder / "starts.npy"))
            elif split == TRAIN_SPLIT:
                rows = len(train_rows(patches))
            else:
                rows = len(eval_rows(patches, MAX_VALID_WINDOWS if split == "valid" else None))
            missing = [t for t in chosen if not _scores_file(folder, t, source).is_file()]
            total += rows
            passes += rows * len(missing)
        hours = sum(seconds.get(s.source_id, 0.0) for s in members) / 3600
        lines.append(
            f"{split}: {len(members)} sources, {hours:.2f} h, {total} labelled rows, "
            f"{passes} teacher passes to do with {[t.name for t in chosen]}"
        )
    return lines


def _shard(text: str) -> tuple[int, int]:
    try:
        k, n = (int(part) for part in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected K/N such as 0/2, got {text!r}") from None
    if not 0 <= k < n:
        raise argparse.ArgumentTypeError(f"K/N needs 0 <= K < N, got {text!r}")
    return k, n


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Log-mels and teacher scores of every patch")
    parser.add_argument("--music", type=Path, default=Path("data/music"))
    parser.add_argument("--rendered", type=Path, default=Path("data/rendered"))
    parser.add_argument("--cache", type=Path, default=Path("data/v3"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--splits",
        nargs="+",
        choices=["train", "valid", "test"],
        default=["valid", "train", "test"],
        help="the splits to label, in this order",
    )
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
        "--shard",
        type=_shard,
        default=(0, 1),
        metavar="K/N",
        help="label every N-th source left, from the K-th (0-based): one process per core",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="compile the teachers (torch.compile): about 2x on CPU, a minute to start",
    )
    parser.add_argument(
        "--plan", action="store_true", help="only count the work left (from the manifests)"
    )
    args = parser.parse_args(argv)
    try:
        names = (
            needed_teachers(read_choice(args.cache)["choices"]) if args.chosen else args.teachers
        )
    except FileNotFoundError as error:
        print(f"error: {error}")
        return 2
    if args.plan:
        print("\n".join(plan(args.music, args.rendered, args.cache, args.splits, names)))
        return 0
    label_patches(
        args.music,
        args.rendered,
        args.cache,
        args.splits,
        names,
        args.threads,
        shard=args.shard,
        compile_graphs=args.compile,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
