"""The `tagger` command: `tagger serve` runs the service, `tagger tag` tags local files and
folders, `tagger tags` prints the vocabulary, `tagger explain` draws a tag's evidence map,
`tagger compile` builds the service's compiled graphs ahead of time, `tagger write-tags` and
`tagger strip-tags` write tags into audio files' own metadata and take them out again.

Settings come from `TAGGER_*` environment variables; command-line options override them.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from app.cli import (
    catalog_commands,
    compile_command,
    explain_command,
    library_commands,
    teach_command,
)
from app.cli.ray_command import add_engine_arguments
from app.pipeline.defaults import default_checkpoint_path
from app.pipeline.vocabulary import Vocabulary, VocabularyError
from app.service.settings import Settings
from model.checkpoint import CheckpointError, read_metadata
from model.tags import MTAT_TAGS


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tagger", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the HTTP service (one process)")
    serve.add_argument("--host", help="address to listen on (TAGGER_HOST, 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (TAGGER_PORT, 8000)")
    serve.add_argument("--checkpoint", type=Path, help="checkpoint file (TAGGER_CHECKPOINT)")
    serve.add_argument("--device", help="auto, cpu, cuda or cuda:N (TAGGER_DEVICE)")
    serve.add_argument("--max-batch-windows", type=int, help="TAGGER_MAX_BATCH_WINDOWS")
    serve.add_argument("--max-wait-ms", type=float, help="TAGGER_MAX_WAIT_MS")
    serve.add_argument("--torch-threads", type=int, help="TAGGER_TORCH_THREADS")
    serve.add_argument(
        "--log-level", choices=["debug", "info", "warning", "error"], help="TAGGER_LOG_LEVEL"
    )

    _add_tag_parser(commands)
    catalog_commands.add_parsers(commands)  # tagger index, tagger similar
    explain_command.add_parser(commands)
    compile_command.add_parser(commands)
    teach_command.add_parsers(commands)  # tagger teach, tagger retrain
    library_commands.add_parsers(commands)  # tagger write-tags, tagger strip-tags

    tags = commands.add_parser("tags", help="print the tag vocabulary")
    tags.add_argument("--checkpoint", type=Path, help="read the vocabulary of this checkpoint")
    tags.add_argument("--json", action="store_true", help="print JSON instead of a table")
    tags.add_argument("--taxonomy", metavar="NAME", help="only this taxonomy's tags (mtt, msd)")
    tags.add_argument(
        "--tag-sets", nargs="+", type=Path, metavar="PATH",
        help="add the tags of these tag sets (docs/custom-tags.md)",
    )  # fmt: skip
    return parser


TAG_EPILOG = """\
exit codes: 0 every file tagged (or skipped by --resume, or nothing to tag); 1 at least one
file failed (the others are tagged and written); 2 the run could not start (options,
checkpoint, device, output file) or the output could not be written; 130 interrupted
(finished files are written).
The full reference is docs/cli.md."""


def _add_tag_parser(commands: Any) -> None:
    tag = commands.add_parser(
        "tag",
        help="tag local audio files and folders",
        description="Tag audio files and folders with the same model code as the service.\n"
        "Windows of several files share each batch, decoding runs ahead in threads, and a\n"
        "file that cannot be decoded is reported and skipped.",
        epilog=TAG_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    tag.add_argument("paths", nargs="+", metavar="PATH", help="audio files and folders")
    tag.add_argument(
        "-r", "--recursive", action="store_true", help="tag audio in subfolders of folders too"
    )
    tag.add_argument(
        "-f", "--format", choices=["table", "json", "jsonl", "csv", "parquet"], default="table",
        help="output format (default: table; parquet with --engine ray, which defaults to it)",
    )  # fmt: skip
    tag.add_argument(
        "-o",
        "--output",
        metavar="FILE",  # a string: with --engine ray it may be a URI, which Path would mangle
        help="write results to FILE instead of standard output",
    )
    tag.add_argument(
        "--resume", action="store_true",
        help="skip files already tagged in --output and add the rest (json, jsonl, csv)",
    )  # fmt: skip
    tag.add_argument(
        "-k",
        "--top-k",
        type=int,
        metavar="N",
        help="tags per file, best first (default: 5 in a table, else 10)",
    )
    tag.add_argument(
        "--threshold", type=float, metavar="X",
        help="one decision threshold for all tags (default: the checkpoint's per-tag ones)",
    )  # fmt: skip
    tag.add_argument("--segments", action="store_true", help="add the scores of every window")
    tag.add_argument(
        "--taxonomy", metavar="NAME",
        help="only the tags of this taxonomy (mtt, msd) of a multi-vocabulary model: top tags, "
        "segments and CSV columns (`tagger tags` lists a model's taxonomies)",
    )  # fmt: skip
    tag.add_argument(
        "--synonyms", choices=["one", "all"],
        help="one: each synonym group once in the top tags, by its best member; all: every tag "
        "(default: one for a multi-vocabulary model, all otherwise)",
    )  # fmt: skip
    tag.add_argument(
        "--tag-sets", nargs="+", type=Path, metavar="PATH",
        help="tag set files or folders whose taught tags are added to the model's "
        "(TAGGER_TAG_SETS; see docs/custom-tags.md)",
    )  # fmt: skip
    tag.add_argument(
        "--embedding", action="store_true",
        help="add each file's L2-normalised embedding (and each window's, with --segments); "
        "see docs/similarity.md",
    )  # fmt: skip
    tag.add_argument(
        "--checkpoint", type=Path, metavar="FILE", help="checkpoint file (TAGGER_CHECKPOINT)"
    )
    tag.add_argument("--device", help="auto, cpu, cuda or cuda:N (TAGGER_DEVICE, auto)")
    tag.add_argument(
        "--precision", choices=["auto", "fp32", "bf16", "fp16", "int8"],
        help="inference precision (TAGGER_PRECISION; default auto: bf16 where the CPU or GPU "
        "computes it natively, else fp32; int8 with --compile where the checkpoint's int8 "
        "calibration allows it, see docs/performance.md)",
    )  # fmt: skip
    tag.add_argument(
        "--compile", choices=["auto", "on", "off"], default="off",
        help="torch.compile every batch shape before tagging (default: off; compiling takes "
        "minutes, worth it only for long runs)",
    )  # fmt: skip
    tag.add_argument(
        "--batch-windows",
        type=int,
        default=8,
        metavar="N",
        help="windows per forward pass (default: 8)",
    )
    tag.add_argument(
        "--threads", type=int, metavar="N",
        help="torch threads for the model (TAGGER_TORCH_THREADS; default: cores - decode threads)",
    )  # fmt: skip
    tag.add_argument(
        "--decode-workers", type=int, metavar="N",
        help="threads decoding ahead of the model (default: 1, or 2 with more than 4 cores)",
    )  # fmt: skip
    tag.add_argument(
        "--max-seconds",
        type=float,
        metavar="S",
        help="fail files longer than this (default: no limit)",
    )
    progress = tag.add_mutually_exclusive_group()
    progress.add_argument(
        "--progress", action="store_true", default=None,
        help="show the progress bar even when standard error is not a terminal",
    )  # fmt: skip
    progress.add_argument(
        "--no-progress", dest="progress", action="store_false", help="no progress bar"
    )
    add_engine_arguments(tag)


def _settings(args: argparse.Namespace) -> Settings:
    names = [
        "host",
        "port",
        "checkpoint",
        "device",
        "max_batch_windows",
        "max_wait_ms",
        "torch_threads",
        "log_level",
    ]
    overrides: dict[str, Any] = {
        name: getattr(args, name) for name in names if getattr(args, name, None) is not None
    }
    return Settings(**overrides)


def _unknown_environment() -> list[str]:
    """TAGGER_* variables that name no setting: most likely typos, which would be ignored."""
    known = {f"TAGGER_{name.upper()}" for name in Settings.model_fields}
    return sorted(k for k in os.environ if k.startswith("TAGGER_") and k.upper() not in known)


def _fail(message: str, code: int = 1) -> int:
    print(f"tagger: {message}", file=sys.stderr)
    return code


def _missing_checkpoint_message(path: Path) -> str:
    how = (
        "Point TAGGER_CHECKPOINT (or --checkpoint) at a .safetensors checkpoint, e.g.\n"
        "  TAGGER_CHECKPOINT=runs/q2l/best.safetensors tagger serve"
    )
    if path == default_checkpoint_path():
        return (
            "the bundled default checkpoint is missing (expected at model/weights/"
            "default.safetensors; `make default-model` rebuilds it). The service never serves "
            f"untrained weights.\n{how}"
        )
    return f"checkpoint not found: {path}\n{how}"


def serve(args: argparse.Namespace) -> int:
    for name in _unknown_environment():
        print(f"tagger: warning: {name} is not a setting and is ignored", file=sys.stderr)
    try:
        settings = _settings(args)
    except ValidationError as error:
        return _fail(f"invalid settings:\n{error}", 2)
    if not settings.checkpoint.is_file():
        return _fail(_missing_checkpoint_message(settings.checkpoint))
    try:
        read_metadata(settings.checkpoint)
    except CheckpointError as error:
        return _fail(f"cannot serve this checkpoint: {error}")
    if settings.tag_sets:
        from app.pipeline.tag_sets import check_tag_sets
        from model.tagset import TagSetError

        try:
            check_tag_sets(settings.checkpoint, settings.tag_sets)
        except TagSetError as error:
            return _fail(f"cannot serve these tag sets: {error}")
    if settings.catalog is not None:
        from app.catalog.store import CatalogError, CatalogStore

        try:  # the service checks it again; this answers with a message, not a traceback
            CatalogStore(settings.catalog, readonly=True).close()
        except CatalogError as error:
            return _fail(f"cannot serve this catalogue: {error}")

    # Imported here, not at the top: torch and FastAPI take seconds to import, `tagger tags`
    # should not wait for them.
    from app.service.app import create_app
    from app.service.logs import configure_logging
    from app.service.server import run_server
    from model.runtime import resolve_device

    try:
        resolve_device(settings.device)
    except RuntimeError as error:
        return _fail(f"{error}; use TAGGER_DEVICE=cpu or auto")
    configure_logging(settings.log_level, settings.log_format)
    # Warnings become JSON log lines too. The all-zero mel filterbank warning is expected for
    # the reference front end (n_fft 512, 128 mels) and says nothing about this run.
    logging.captureWarnings(True)
    warnings.filterwarnings("ignore", message="At least one mel filterbank has all zero values")
    return run_server(create_app(settings), settings)


def tags(args: argparse.Namespace) -> int:
    vocabulary = [(tag, 0.5) for tag in MTAT_TAGS]
    source = "the MagnaTagATune top-50 (no checkpoint given)"
    if args.checkpoint is not None:
        try:
            metadata = read_metadata(args.checkpoint)
        except CheckpointError as error:
            return _fail(str(error))
        vocabulary = list(zip(metadata.tags, metadata.thresholds, strict=True))
        source = f"{args.checkpoint} ({metadata.preset})"
    if args.tag_sets:
        if args.checkpoint is None:
            return _fail("--tag-sets needs --checkpoint: a tag set belongs to one checkpoint", 2)
        from app.pipeline.tag_sets import check_tag_sets, load_tag_sets
        from model.tagset import TagSetError

        try:
            check_tag_sets(args.checkpoint, args.tag_sets)
            taught = [(t.tag, t.threshold) for s in load_tag_sets(args.tag_sets) for t in s.tags]
        except TagSetError as error:
            return _fail(str(error), 2)
        vocabulary += taught
        source += f" with {len(taught)} taught tags"
    tags_of = Vocabulary(tuple(tag for tag, _ in vocabulary))
    try:
        listing = tags_of.listing([t for _, t in vocabulary], args.taxonomy)
    except VocabularyError as error:
        return _fail(f"--taxonomy: {error}", 2)
    if not tags_of.taxonomies:  # a single-vocabulary model: the listing of before taxonomies
        if args.json:
            rows = [{**tag.to_dict(), "threshold": t} for tag, t in vocabulary]
            print(json.dumps(rows, indent=2))
            return 0
        print(f"# {len(vocabulary)} tags of {source}")
        print("index\tname\tcategory\tsynonym_group\tthreshold")
        for index, (tag, threshold) in enumerate(vocabulary):
            print(f"{index}\t{tag.name}\t{tag.category}\t{tag.synonym_group}\t{threshold:.3f}")
        return 0
    if args.json:  # the document of GET /tags
        print(json.dumps(listing, indent=2))
        return 0
    print(f"# {len(listing['tags'])} tags of {source}, by taxonomy and category")
    print("index\tid\tcategory\tsynonym_group\tthreshold")
    for group in listing["taxonomies"]:
        for category in group["categories"]:
            for row in category["tags"]:
                print(
                    f"{row['index']}\t{row.get('id', row['name'])}\t{row['category']}\t"
                    f"{row['synonym_group']}\t"
                    f"{row['threshold']:.3f}"
                )
    return 0


def tag(args: argparse.Namespace) -> int:
    from app.cli.options import TagRunOptions, tag_settings

    try:
        settings = tag_settings(args)
    except ValidationError as error:
        return _fail(f"invalid settings:\n{error}", 2)
    if not settings.checkpoint.is_file():
        return _fail(_missing_checkpoint_message(settings.checkpoint), 2)

    if args.engine == "ray" or args.format == "parquet":
        from app.cli.ray_command import run_ray

        return run_ray(args, settings)
    # Imported here: torch takes seconds to import, `tagger tags` should not wait for it.
    from app.cli.tag_command import run

    warnings.filterwarnings("ignore", message="At least one mel filterbank has all zero values")
    return run(TagRunOptions.from_args(args, settings))


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "serve":
        return serve(args)
    if args.command == "tag":
        return tag(args)
    if args.command in ("index", "similar"):
        warnings.filterwarnings("ignore", message="At least one mel filterbank has all zero values")
        run = catalog_commands.index if args.command == "index" else catalog_commands.similar
        return run(args)
    if args.command == "explain":
        return explain_command.run(args)
    if args.command == "compile":
        return compile_command.run(args)
    if args.command in ("teach", "retrain"):
        warnings.filterwarnings("ignore", message="At least one mel filterbank has all zero values")
        run = teach_command.run_teach if args.command == "teach" else teach_command.run_retrain
        return run(args)
    if args.command in library_commands.COMMANDS:
        return library_commands.run(args)
    return tags(args)


if __name__ == "__main__":
    sys.exit(main())
