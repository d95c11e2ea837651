"""The `tagger` command: `tagger serve` runs the service, `tagger tags` prints the vocabulary.

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

from app.settings import Settings, default_checkpoint_path
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

    tags = commands.add_parser("tags", help="print the tag vocabulary")
    tags.add_argument("--checkpoint", type=Path, help="read the vocabulary of this checkpoint")
    tags.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return parser


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

    # Imported here, not at the top: torch and FastAPI take seconds to import, `tagger tags`
    # should not wait for them.
    import uvicorn

    from app.logs import configure_logging
    from app.main import create_app
    from app.service import resolve_device

    try:
        resolve_device(settings.device)
    except RuntimeError as error:
        return _fail(f"{error}; use TAGGER_DEVICE=cpu or auto")
    configure_logging(settings.log_level)
    # Warnings become JSON log lines too. The all-zero mel filterbank warning is expected for
    # the reference front end (n_fft 512, 128 mels) and says nothing about this run.
    logging.captureWarnings(True)
    warnings.filterwarnings("ignore", message="At least one mel filterbank has all zero values")
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=10,
    )
    return 0


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
    if args.json:
        rows = [{**tag.to_dict(), "threshold": t} for tag, t in vocabulary]
        print(json.dumps(rows, indent=2))
        return 0
    print(f"# {len(vocabulary)} tags of {source}")
    print("index\tname\tcategory\tsynonym_group\tthreshold")
    for index, (tag, threshold) in enumerate(vocabulary):
        print(f"{index}\t{tag.name}\t{tag.category}\t{tag.synonym_group}\t{threshold:.3f}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "serve":
        return serve(args)
    return tags(args)


if __name__ == "__main__":
    sys.exit(main())
