"""One batch-tagging job on Ray Data: list SOURCE, skip what DEST holds, tag the rest, write.

The driver (this process) lists the files and reads the checkpoint; Ray's workers read the
files (`read_binary_files`), decode them (CPU tasks), score them (an actor pool, one model per
actor: `num_gpus=1` per actor on GPU nodes, CPU actors otherwise) and write DEST, streaming:
files are written while others are still being decoded, so an interrupted job keeps what its
finished write tasks wrote and a rerun skips those files.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal

import ray
import ray.data

from app.pipeline.vocabulary import Vocabulary
from app.scale.stages import (
    PARQUET_SCHEMA,
    DecodeConfig,
    JsonLinesDatasink,
    ScorerConfig,
    TrackScorer,
    decode_file,
)
from app.scale.storage import Location, Outcome, done_files, list_audio, read_outcomes
from model.checkpoint import load_checkpoint
from model.runtime import CompileMode, Precision

OutputFormat = Literal["parquet", "jsonl"]
DECODE_MEMORY_BYTES = 512 * 1024**2
"""Memory a decode task reserves: its worker process (torch, PyAV) peaked at 400 MB here."""
ROWS_PER_FILE = 200
"""Records gathered into one output file: 5,000 files for a million tracks, not 250,000 of four
rows; an interrupted job loses at most this many unwritten records per write task."""


@dataclass(frozen=True)
class JobOptions:
    """Everything a job does (the `tagger tag --engine ray` options, defaults filled in).

    Attributes:
        source, dest: Where the audio is and where the records go (`app.scale.storage`).
        format: parquet or jsonl files in DEST.
        actors: Model actors (one per GPU on GPU nodes).
        gpus_per_actor: 1 on GPU nodes, 0 for CPU actors.
        threads: Torch threads (and Ray CPUs) per CPU actor.
        decode_workers: Decode tasks at once; None lets Ray use every CPU the actors leave.
        files_per_batch: Files whose windows go to an actor in one batch.
        Others: as `tagger tag`'s options.
    """

    source: Location
    dest: Location
    format: OutputFormat
    recursive: bool
    checkpoint: Path
    device: str
    precision: Precision
    channels_last: bool
    compile: CompileMode
    batch_windows: int
    top_k: int
    threshold: float | None
    segments: bool
    max_seconds: float | None
    actors: int = 1
    gpus_per_actor: float = 0.0
    threads: int = 1
    decode_workers: int | None = None
    files_per_batch: int = 4
    progress: bool = True
    embedding: bool = False
    taxonomy: str | None = None
    synonyms: str | None = None


@dataclass
class JobReport:
    """What a job did: files tagged, failed (with the reason) and skipped, and its speed."""

    tagged: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    skipped: int = 0
    ignored: int = 0
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0
    stats: str = ""

    @property
    def audio_hours_per_hour(self) -> float:
        return self.audio_seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0


def build_dataset(options: JobOptions, paths: list[str]) -> ray.data.Dataset:
    """The stages over `paths` (paths inside the source filesystem), not yet executed."""
    checkpoint = load_checkpoint(options.checkpoint)  # verified once here, then per actor
    vocabulary = Vocabulary(checkpoint.metadata.tags)  # a bad --taxonomy fails before Ray runs
    vocabulary.select(options.taxonomy)
    vocabulary.synonyms(options.synonyms)
    audio = checkpoint.model.audio
    decode = DecodeConfig(audio.sample_rate, audio.window_samples, options.max_seconds)
    scorer = ScorerConfig(
        checkpoint=[ray.put(options.checkpoint.read_bytes())],
        model_id=checkpoint.model_id,
        device=options.device,
        precision=options.precision,
        channels_last=options.channels_last,
        compile=options.compile,
        batch_windows=options.batch_windows,
        threads=options.threads,
        top_k=options.top_k,
        threshold=options.threshold,
        segments=options.segments,
        output=options.format,
        embedding=options.embedding,
        taxonomy=options.taxonomy,
        synonyms=options.synonyms,
    )
    files = ray.data.read_binary_files(
        paths,
        include_paths=True,
        filesystem=options.source.filesystem,
        # One read task per file, with decoding's request: Ray fuses reading into the decode
        # tasks (a split read would not fuse) and balances work file by file.
        override_num_blocks=len(paths),
        memory=DECODE_MEMORY_BYTES,
    )
    decoded = files.map(
        partial(decode_file, config=decode, scheme=options.source.scheme),
        compute=ray.data.TaskPoolStrategy(size=options.decode_workers),
        num_cpus=1,
        # A decode task holds one file's bytes, samples and windows. The request also keeps
        # Ray from fusing decoding into the model actors, where it would not overlap the model.
        memory=DECODE_MEMORY_BYTES,
    )
    compute: dict[str, Any] = (
        {"num_gpus": options.gpus_per_actor}
        if options.gpus_per_actor
        else {"num_cpus": options.threads}
    )
    return decoded.map_batches(
        TrackScorer,
        fn_constructor_args=(scorer,),
        batch_size=options.files_per_batch,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=options.actors),
        # One model per node before two on one. (Passed as a plain remote arg, which Ray 2.60
        # warns it will drop in 2.64; the pin is 2.60.)
        scheduling_strategy="SPREAD",
        **compute,
    )


def run_job(options: JobOptions, *, say: Callable[[str], None] = print) -> JobReport:
    """Run the job on the Ray cluster this process is connected to (`ray.init` first).

    Raises:
        app.scale.storage.StorageError: SOURCE or DEST cannot be used.
        model.checkpoint.CheckpointError: the checkpoint cannot be used.
        app.pipeline.vocabulary.VocabularyError: a taxonomy the checkpoint does not have.
    """
    started = time.monotonic()
    report = JobReport()
    listing = list_audio(options.source, recursive=options.recursive)
    report.ignored = listing.ignored
    before = read_outcomes(options.dest, options.format)
    done = done_files(before)
    names = {options.source.scheme + p: p for p in listing.paths}
    todo = [path for name, path in names.items() if name not in done]
    report.skipped = len(names) - len(todo)
    say(
        f"{len(todo)} files to tag in {options.source.uri}"
        + (f", {report.skipped} already in {options.dest.uri}" if report.skipped else "")
    )
    if todo:
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = options.progress
        dataset = build_dataset(options, todo)
        if options.format == "parquet":
            dataset.write_parquet(
                options.dest.path,
                filesystem=options.dest.filesystem,
                schema=PARQUET_SCHEMA,
                min_rows_per_file=ROWS_PER_FILE,
            )
        else:
            sink = JsonLinesDatasink(
                options.dest.path,
                filesystem=options.dest.filesystem,
                min_rows_per_file=ROWS_PER_FILE,
            )
            dataset.write_datasink(sink)
        _tally(report, read_outcomes(options.dest, options.format), set(names) - done)
        report.stats = dataset.stats()
    report.wall_seconds = time.monotonic() - started
    return report


def _tally(report: JobReport, outcomes: list[Outcome], attempted: set[str]) -> None:
    """This run's tagged and failed files, from DEST as it is now."""
    done = {o.file: o for o in outcomes if o.error is None}
    errors = {o.file: o.error for o in outcomes if o.error is not None}
    for name in sorted(attempted):
        if name in done:
            report.tagged += 1
            report.audio_seconds += done[name].duration_seconds
        else:
            report.failed.append((name, errors.get(name) or "no record was written"))
