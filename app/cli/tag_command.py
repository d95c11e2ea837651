"""`tagger tag`: load the model, tag the files, write the output, report, choose the exit code.

Exit codes: 0 when every file was tagged (or skipped by --resume, or there was nothing to tag),
1 when at least one file failed (the others are tagged and written), 2 when the run could not
start (bad options, unusable checkpoint, device or output file) or its output could not be
written, 130 when interrupted (what
finished is written, so --resume continues from there).
"""

from __future__ import annotations

import dataclasses
import itertools
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from app.cli.batch_tagging import (
    BatchTagger,
    FileList,
    FileResult,
    collect_files,
)
from app.cli.options import TagRunOptions
from app.cli.output import (
    RESUMABLE,
    CsvWriter,
    Describer,
    JsonLinesWriter,
    JsonWriter,
    OutputError,
    Previous,
    TableWriter,
    Writer,
    read_previous,
)
from app.pipeline.describe import decision_thresholds
from app.pipeline.int8 import plan_int8
from app.pipeline.tag_sets import with_tag_sets
from app.pipeline.vocabulary import Vocabulary, VocabularyError
from model.checkpoint import Checkpoint, CheckpointError, load_checkpoint
from model.runtime import Runtime, RuntimeOptions, resolve_device
from model.tagset import TagSetError

EXIT_OK = 0
EXIT_FAILED_FILES = 1
EXIT_CANNOT_START = 2
EXIT_INTERRUPTED = 130


def _say(message: str) -> None:
    # tqdm.write keeps the progress bar intact below the message.
    tqdm.write(f"tagger: {message}", file=sys.stderr)


@dataclass
class _Tally:
    started: float = field(default_factory=time.monotonic)
    ok: int = 0
    failed: int = 0
    audio_seconds: float = 0.0

    def add(self, result: FileResult) -> None:
        if result.ok:
            self.ok += 1
            self.audio_seconds += result.duration_seconds
        else:
            self.failed += 1

    @property
    def audio_hours(self) -> float:
        return self.audio_seconds / 3600

    def speed(self) -> float:
        """Audio hours tagged per hour of wall time so far."""
        return self.audio_seconds / max(time.monotonic() - self.started, 1e-9)


def _check(options: TagRunOptions) -> str | None:
    """What is wrong with the options, before anything is loaded (the vocabulary size aside)."""
    if options.resume and options.format not in RESUMABLE:
        return f"--resume needs --format {', '.join(RESUMABLE)} (a table cannot be read back)"
    if options.resume and options.output is None:
        return "--resume needs --output FILE: the output it continues"
    if options.threshold is not None and not 0.0 <= options.threshold <= 1.0:
        return f"--threshold must lie in [0, 1], got {options.threshold}"
    for name in ("batch_windows", "decode_workers", "threads"):
        if getattr(options, name) < 1:
            return f"--{name.replace('_', '-')} must be at least 1, got {getattr(options, name)}"
    if options.max_seconds is not None and options.max_seconds <= 0:
        return f"--max-seconds must be positive, got {options.max_seconds}"
    return None


def _writer(
    options: TagRunOptions, describer: Describer, files: list[str], previous: Previous
) -> Writer:
    output: Path | None = options.output
    append = options.resume and output is not None and output.exists() and output.stat().st_size > 0
    if options.format == "table":
        return TableWriter(describer, output, files)
    if options.format == "json":
        return JsonWriter(describer, output, previous.records)
    if options.format == "jsonl":
        return JsonLinesWriter(describer, output, append=append)
    return CsvWriter(describer, output, append=append)


def _summary(
    tally: _Tally, tagger: BatchTagger, skipped: int, listing: FileList, interrupted: bool
) -> None:
    wall = time.monotonic() - tally.started
    counts = f"files: {tally.ok} tagged, {tally.failed} failed, {skipped} skipped"
    if skipped:
        counts += " (already in the output)"
    if listing.ignored:
        counts += f"; {listing.ignored} non-audio or hidden files in folders ignored"
    if listing.subfolders_not_searched:
        counts += f"; {listing.subfolders_not_searched} subfolders not searched (--recursive does)"
    speed = tally.audio_seconds / wall if wall > 0 else 0.0
    print(
        f"tagger: {'interrupted: ' if interrupted else ''}{counts}\n"
        f"tagger: {tally.audio_hours:.3f} h of audio in {wall:.1f} s wall time "
        f"= {speed:.1f} audio hours per hour",
        file=sys.stderr,
    )
    if tagger.batches and wall > 0:
        print(
            f"tagger: model {tagger.compute_seconds / wall:.0%} of the wall time "
            f"({tagger.batches} batches), waiting for decoding "
            f"{tagger.decode_wait_seconds / wall:.0%}",
            file=sys.stderr,
        )


def _load(options: TagRunOptions) -> tuple[Checkpoint, torch.device] | str:
    try:
        device = resolve_device(options.device)
    except RuntimeError as error:
        return f"{error}; use --device cpu"
    try:
        checkpoint = load_checkpoint(options.checkpoint, device=device)
        checkpoint = with_tag_sets(checkpoint, options.tag_sets)
    except (CheckpointError, TagSetError) as error:
        return str(error)
    return checkpoint, device


def _runtime(options: TagRunOptions, checkpoint: Checkpoint, device: torch.device) -> Runtime:
    """The model prepared as the service prepares it (precision, memory format, compilation)."""
    # Embeddings always come with the scores (pooling costs next to nothing, see
    # model/embedding.py); --embedding only decides whether they are written.
    prepared = RuntimeOptions(
        precision=options.precision,
        channels_last=options.channels_last,
        compile=options.compile,
        embeddings=True,
    )
    plan = plan_int8(checkpoint, prepared, device)
    if options.precision == "int8" or (options.precision == "auto" and options.compile != "off"):
        _say(f"{'int8' if plan.use else 'not int8'}: {plan.decision.reason}")
    if not plan.use:
        prepared = plan.fallback(prepared)
    else:
        prepared = dataclasses.replace(prepared, precision="int8")
    runtime = Runtime(
        checkpoint.model,
        device,
        prepared,
        max_batch=options.batch_windows,
        int8_recipe=plan.recipe,
    )
    if options.compile != "off":
        # Compiles every batch shape now; with "auto" a failure falls back to eager execution.
        _say(f"compiling batch shapes {list(runtime.shapes)} (this can take minutes)")
        seconds = runtime.warm_up()
        info = runtime.info()
        how = "compiled" if info.compiled else f"not compiled ({info.compile_error})"
        _say(f"{how} in {seconds:.0f} s")
    return runtime


def _describe_runtime(runtime: Runtime) -> str:
    info = runtime.info()
    layout = ", channels-last" if info.channels_last else ""
    return f"{info.precision}{layout}, {'compiled' if info.compiled else 'eager'}"


def run(options: TagRunOptions) -> int:
    """`tagger tag` with its options; returns the exit code."""
    problem = _check(options)
    if problem:
        _say(problem)
        return EXIT_CANNOT_START
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(options.threads)
    try:
        return _run(options)
    finally:
        torch.set_num_threads(previous_threads)  # for callers in the same process (tests)


def _run(options: TagRunOptions) -> int:
    tally = _Tally()
    loaded = _load(options)
    if isinstance(loaded, str):
        _say(loaded)
        return EXIT_CANNOT_START
    checkpoint, device = loaded
    metadata = checkpoint.metadata
    n_tags = len(metadata.tags)
    vocabulary = Vocabulary(metadata.tags)
    try:
        columns = vocabulary.select(options.taxonomy)
        synonyms = vocabulary.synonyms(options.synonyms)
    except VocabularyError as error:
        _say(f"--taxonomy: {error}")
        return EXIT_CANNOT_START
    if not 1 <= options.top_k <= len(columns):
        of = "the vocabulary size" if options.taxonomy is None else f"{options.taxonomy}'s tags"
        _say(f"--top-k must be between 1 and {len(columns)} ({of}), got {options.top_k}")
        return EXIT_CANNOT_START
    describer = Describer(
        model_id=checkpoint.model_id,
        tags=metadata.tags,
        thresholds=decision_thresholds(
            torch.tensor(metadata.thresholds, dtype=torch.float32), options.threshold
        ),
        top_k=options.top_k,
        segments=options.segments,
        window_seconds=checkpoint.model.audio.window_seconds,
        embedding=checkpoint.model.embedding_kind if options.embedding else None,
        columns=None if options.taxonomy is None else columns,
        one_per_group=synonyms == "one",
    )

    listing = collect_files(options.paths, recursive=options.recursive)
    previous = Previous(frozenset(), frozenset(), [])
    if options.resume and options.output is not None:  # _check made sure of the output
        try:
            previous = read_previous(
                options.output,
                options.format,
                describer.tag_names,
                embedding=options.embedding,
            )
        except OutputError as error:
            _say(str(error))
            return EXIT_CANNOT_START
        others = previous.model_ids - {checkpoint.model_id}
        if others:
            _say(f"warning: {options.output} also holds results of {', '.join(sorted(others))}")
    todo = [f for f in listing.files if not previous.is_done(f)]
    skipped = len(listing.files) - len(todo)

    audio = checkpoint.model.audio
    try:
        runtime = _runtime(options, checkpoint, device)
    except Exception as error:  # --compile on, and compilation failed
        _say(f"cannot prepare the model: {type(error).__name__}: {error}")
        return EXIT_CANNOT_START
    tagger = BatchTagger(
        runtime,
        window_samples=audio.window_samples,
        sample_rate=audio.sample_rate,
        batch_windows=options.batch_windows,
        decode_workers=options.decode_workers,
        max_seconds=options.max_seconds,
        n_tags=n_tags,
    )
    try:
        writer = _writer(options, describer, [p for p, _ in listing.unusable] + todo, previous)
    except OSError as error:
        _say(f"cannot write {options.output}: {error.strerror or error}")
        return EXIT_CANNOT_START
    _say(
        f"{checkpoint.model_id} on {device} ({_describe_runtime(runtime)}), "
        f"torch threads {options.threads}, decode threads {options.decode_workers}, "
        f"batches of {options.batch_windows} windows; files to tag: {len(todo)}"
        + (f", {skipped} already in {options.output}" if skipped else "")
    )
    interrupted = False
    bar = tqdm(
        total=len(listing.unusable) + len(todo),
        unit="file",
        file=sys.stderr,
        disable=None if options.progress is None else not options.progress,
        dynamic_ncols=True,
    )
    try:
        unusable = [FileResult(path=path, error=why) for path, why in listing.unusable]
        for result in itertools.chain(unusable, tagger.tag(todo)):
            writer.write(result)
            tally.add(result)
            if not result.ok:
                _say(f"failed: {result.path}: {result.error}")
            bar.set_postfix_str(
                f"{tally.audio_hours:.2f} h audio, {tally.speed():.0f} h/h", refresh=False
            )
            bar.update(1)
        writer.close()
    except KeyboardInterrupt:
        interrupted = True
        writer.close()  # what finished is kept, for --resume
    except OSError as error:  # the output, e.g. a full disk; decoding errors never get here
        _say(f"cannot write {options.output or 'the output'}: {error.strerror or error}")
        return EXIT_CANNOT_START
    finally:
        bar.close()
    _summary(tally, tagger, skipped, listing, interrupted)
    if interrupted:
        return EXIT_INTERRUPTED
    return EXIT_FAILED_FILES if tally.failed else EXIT_OK
