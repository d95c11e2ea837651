"""`tagger write-tags` and `tagger strip-tags`: genres, moods and scores in the files themselves.

`write-tags` tags files with the model (as `tagger tag` does) and writes the chosen genres and
moods, with a record of every score and the model, into each file's own metadata
(`app.library.filetags`: ID3v2.4, Vorbis comments, MP4 atoms; atomic, audio untouched).
`strip-tags` removes exactly what was written. docs/library-tags.md has the reference.

Exit codes: 0 every file written, skipped (already written by the same model and settings)
or left alone (strip-tags: nothing of ours in it); 1 at least one file failed (unsupported,
corrupt, read-only, locked, undecodable; the others are done); 2 the run could not start (bad
options, no model); 130 interrupted (finished files are written, a rerun skips them).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CANNOT_START = 2
EXIT_INTERRUPTED = 130
COMMANDS = ("write-tags", "strip-tags")

EPILOG = """\
exit codes: 0 every file done (or skipped); 1 at least one file failed (the others are done);
2 the run could not start; 130 interrupted. The reference is docs/library-tags.md."""


def add_parsers(commands: Any) -> None:
    """Register `write-tags` and `strip-tags` on the `tagger` parser's subcommands."""
    write = commands.add_parser(
        "write-tags",
        help="tag files and write genres, moods and scores into their own metadata",
        description="Tag audio files with the model and write the chosen genres and moods, and a\n"
        "record of every score, into each file's tags (MP3, FLAC, Ogg Vorbis, Opus, M4A).\n"
        "Writes are atomic and never touch the audio; a rerun skips files already written\n"
        "by the same model and settings.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _paths(write)
    write.add_argument(
        "--threshold", type=float, metavar="X",
        help="one decision threshold for all tags (default: the model's per-tag thresholds)",
    )  # fmt: skip
    write.add_argument(
        "-k", "--top-k", type=int, default=3, metavar="N",
        help="at most N genres and N moods per file, best first (default: 3)",
    )  # fmt: skip
    write.add_argument(
        "--taxonomy", metavar="NAME", help="only this taxonomy's tags (mtt, msd) of the model"
    )
    write.add_argument(
        "--replace", action="store_true",
        help="put our genres and moods in place of the file's own (default: merge with them; "
        "strip-tags puts replaced values back)",
    )  # fmt: skip
    write.add_argument(
        "--force", action="store_true",
        help="rewrite files already written by the same model and settings",
    )  # fmt: skip
    write.add_argument("--checkpoint", type=Path, metavar="FILE", help="TAGGER_CHECKPOINT")
    write.add_argument("--device", help="auto, cpu, cuda or cuda:N (TAGGER_DEVICE)")
    write.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"])
    write.add_argument("--batch-windows", type=int, default=8, metavar="N")
    write.add_argument("--decode-workers", type=int, metavar="N")
    write.add_argument("--threads", type=int, metavar="N", help="torch threads")

    strip = commands.add_parser(
        "strip-tags",
        help="remove what write-tags wrote (and put back values it replaced)",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _paths(strip)


def _paths(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="PATH", help="audio files and folders")
    parser.add_argument("-r", "--recursive", action="store_true", help="search subfolders too")
    parser.add_argument(
        "-n", "--dry-run", action="store_true", help="print what would change, change nothing"
    )
    parser.add_argument("--no-progress", dest="progress", action="store_false", default=None)


def _say(message: str) -> None:
    from tqdm import tqdm

    tqdm.write(f"tagger: {message}", file=sys.stderr)


def _show(message: str) -> None:
    from tqdm import tqdm

    tqdm.write(message, file=sys.stdout)


@dataclass
class _Tally:
    done: int = 0
    skipped: int = 0
    failed: list[str] = field(default_factory=list)

    def fail(self, path: str, why: str) -> None:
        self.failed.append(path)
        _say(f"failed: {path}: {why}")


def run(args: argparse.Namespace) -> int:
    if args.command == "strip-tags":
        return _strip(args)
    return _write(args)


def _strip(args: argparse.Namespace) -> int:
    from app.cli.batch_tagging import collect_files
    from app.library.filetags import FileTagError, strip_tags

    listing = collect_files(args.paths, recursive=args.recursive)
    tally = _Tally()
    for path, why in listing.unusable:
        tally.fail(path, why)
    for path in listing.files:
        try:
            plan = strip_tags(path, dry_run=args.dry_run)
        except FileTagError as error:
            tally.fail(path, str(error))
            continue
        if plan is None:
            tally.skipped += 1
            continue
        tally.done += 1
        _show(f"{'would strip' if args.dry_run else 'stripped'}: {path}: {plan.describe()}")
    verb = "would strip" if args.dry_run else "stripped"
    _say(
        f"files: {tally.done} {verb}, {tally.skipped} without tags of ours, "
        f"{len(tally.failed)} failed"
    )
    return EXIT_FAILED if tally.failed else EXIT_OK


def _write(args: argparse.Namespace) -> int:
    from app.cli.batch_tagging import collect_files
    from app.library.choice import ChoiceError, ChoiceSettings, Chooser
    from app.library.filetags import FileTagError, check_writable, read_state
    from app.library.scoring import LocalScorer, ScorerError

    settings = ChoiceSettings(
        threshold=args.threshold,
        top_k=args.top_k,
        taxonomy=args.taxonomy,
        mode="replace" if args.replace else "merge",
    )
    try:
        settings.check()
        for name in ("batch_windows", "decode_workers", "threads"):
            value = getattr(args, name)
            if value is not None and value < 1:
                raise ChoiceError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    except ChoiceError as error:
        _say(str(error))
        return EXIT_CANNOT_START
    import warnings

    warnings.filterwarnings("ignore", message="At least one mel filterbank has all zero values")
    try:
        scorer = LocalScorer(
            args.checkpoint,
            device=args.device,
            precision=args.precision,
            batch_windows=args.batch_windows,
            threads=args.threads,
            decode_workers=args.decode_workers,
        )
        chooser = Chooser(scorer.model_id, scorer.tags, scorer.thresholds, settings)
    except (ScorerError, ChoiceError) as error:
        _say(str(error))
        return EXIT_CANNOT_START

    listing = collect_files(args.paths, recursive=args.recursive)
    tally = _Tally()
    for path, why in listing.unusable:
        tally.fail(path, why)
    todo: list[str] = []
    for path in listing.files:  # tag reading is cheap: refuse bad files before decoding them
        try:
            state = read_state(path)
            check_writable(path)  # a dry run predicts this failure too
        except FileTagError as error:
            tally.fail(path, str(error))
            continue
        if state.digest == chooser.digest and not args.force:
            tally.skipped += 1
        else:
            todo.append(path)
    _say(
        f"{scorer.describe()}; files to tag: {len(todo)}"
        + (f", {tally.skipped} already written with these settings" if tally.skipped else "")
    )
    started = time.monotonic()
    audio_seconds = 0.0
    interrupted = False
    from tqdm import tqdm

    bar = tqdm(
        total=len(todo),
        unit="file",
        file=sys.stderr,
        disable=None if args.progress is None else not args.progress,
    )
    try:
        for scored in scorer.score(todo):
            bar.update(1)
            if scored.scores is None:
                tally.fail(scored.path, scored.error or "not scored")
                continue
            audio_seconds += scored.duration_seconds
            try:
                from app.library.filetags import write_tags

                plan = write_tags(scored.path, chooser.choose(scored.scores), dry_run=args.dry_run)
            except FileTagError as error:
                tally.fail(scored.path, str(error))
                continue
            tally.done += 1
            _show(f"{'would write' if args.dry_run else 'wrote'}: {scored.path}: {plan.describe()}")
    except KeyboardInterrupt:
        interrupted = True
    finally:
        bar.close()
    wall = time.monotonic() - started
    verb = "would write" if args.dry_run else "written"
    _say(
        f"{'interrupted: ' if interrupted else ''}files: {tally.done} {verb}, "
        f"{tally.skipped} skipped, {len(tally.failed)} failed; {audio_seconds / 3600:.3f} h of "
        f"audio in {wall:.1f} s"
    )
    if interrupted:
        return EXIT_INTERRUPTED
    return EXIT_FAILED if tally.failed else EXIT_OK
