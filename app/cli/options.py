"""`tagger tag`'s options: the few settings it reads from the environment, and one frozen
dataclass of everything it was asked to do, built once from the parsed command line.

`tagger tag` reads only the `TAGGER_*` variables it uses (`ModelSettings`), not the service's
whole `Settings`: a service-only variable (`TAGGER_PORT`, `TAGGER_MAX_WAIT_MS`, ...) that is
invalid is the service's problem and must not stop a run on local files.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from app.cli.output import Format
from app.pipeline.defaults import default_cli_threads, default_decode_workers
from app.pipeline.settings import ModelSettings
from model.runtime import CompileMode, Precision


def tag_settings(args: argparse.Namespace) -> ModelSettings:
    """The environment, with --checkpoint, --device and --precision winning over it.

    Raises:
        pydantic.ValidationError: a variable or option does not pass its check.
    """
    given = {
        "checkpoint": args.checkpoint,
        "device": args.device,
        "precision": args.precision,
        "tag_sets": tuple(getattr(args, "tag_sets", None) or ()) or None,
    }
    return ModelSettings(**{name: value for name, value in given.items() if value is not None})


@dataclass(frozen=True)
class TagRunOptions:
    """Everything one `tagger tag` run does, defaults filled in (see `from_args`).

    Attributes mirror the command-line options (docs/cli.md); `threads` are the torch threads
    and `progress` is None to show the bar only on a terminal.
    """

    paths: tuple[str, ...]
    recursive: bool
    format: Format
    output: Path | None
    resume: bool
    top_k: int
    threshold: float | None
    segments: bool
    checkpoint: Path
    device: str
    precision: Precision
    channels_last: bool
    compile: CompileMode
    batch_windows: int
    threads: int
    decode_workers: int
    max_seconds: float | None
    progress: bool | None
    embedding: bool = False
    taxonomy: str | None = None
    synonyms: str | None = None
    tag_sets: tuple[Path, ...] = ()

    @classmethod
    def from_args(cls, args: argparse.Namespace, settings: ModelSettings) -> TagRunOptions:
        """Options left unset are filled in: the table shows fewer tags, and CPUs get small
        batches (on this kind of CPU larger batches cost throughput, see docs/performance.md).
        """
        decode_workers: int = (
            default_decode_workers() if args.decode_workers is None else args.decode_workers
        )
        threads: int | None = args.threads
        if threads is None:
            threads = settings.torch_threads or default_cli_threads(decode_workers)
        return cls(
            paths=tuple(args.paths),
            recursive=args.recursive,
            format=args.format,
            output=None if args.output is None else Path(args.output),
            resume=args.resume,
            top_k=(5 if args.format == "table" else 10) if args.top_k is None else args.top_k,
            threshold=args.threshold,
            segments=args.segments,
            checkpoint=settings.checkpoint,
            device=settings.device,
            precision=settings.precision,
            channels_last=settings.channels_last,
            compile=args.compile,
            batch_windows=args.batch_windows,
            threads=threads,
            decode_workers=decode_workers,
            max_seconds=args.max_seconds,
            progress=args.progress,
            embedding=getattr(args, "embedding", False),
            taxonomy=getattr(args, "taxonomy", None),
            synonyms=getattr(args, "synonyms", None),
            tag_sets=settings.tag_sets,
        )
