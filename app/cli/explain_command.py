"""`tagger explain FILE --tag TAG --out map.png`: a tag's evidence over the track's log-mel.

The maps are the service's (`app.pipeline.explain`); this module only parses the options and
draws them with matplotlib (the `explain` extra: `pip install 'music-tagger[explain]'`).
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import Any

EXPLAIN_EPILOG = """\
exit codes: 0 picture written; 1 the audio could not be read; 2 bad options (unknown tag,
a method the model lacks, no matplotlib, checkpoint missing). docs/explanations.md says what
the maps are and how well they match ground truth."""


def add_parser(commands: Any) -> None:
    explain = commands.add_parser(
        "explain",
        help="draw where in time and frequency the model found a tag",
        description="Draw a tag's evidence map over the track's log-mel spectrogram.",
        epilog=EXPLAIN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    explain.add_argument("file", type=Path, metavar="FILE", help="an audio file")
    explain.add_argument(
        "-t", "--tag", action="append", required=True, metavar="TAG",
        help="tag to explain, by id (msd/rock) or a name only one taxonomy has (repeat for "
        "several; `tagger tags` lists them)",
    )  # fmt: skip
    explain.add_argument(
        "--taxonomy", metavar="NAME",
        help="look bare tag names up in this taxonomy (mtt, msd) of a multi-vocabulary model",
    )  # fmt: skip
    explain.add_argument(
        "-o", "--out", type=Path, required=True, metavar="PNG", help="picture to write"
    )
    explain.add_argument(
        "--method", choices=["gradient", "attention"],
        help="evidence method (default: gradient; attention needs a Query2Label model)",
    )  # fmt: skip
    explain.add_argument("--json", type=Path, metavar="FILE", help="also write the maps as JSON")
    explain.add_argument(
        "--checkpoint", type=Path, metavar="FILE", help="checkpoint file (TAGGER_CHECKPOINT)"
    )
    explain.add_argument(
        "--max-columns", type=int, default=256, metavar="N",
        help="time columns at most; longer tracks average steps (default: 256)",
    )  # fmt: skip
    explain.add_argument(
        "--max-seconds", type=float, metavar="S", help="fail files longer than this"
    )


def _fail(message: str, code: int) -> int:
    print(f"tagger explain: {message}", file=sys.stderr)
    return code


def run(args: argparse.Namespace) -> int:
    try:
        import matplotlib

        matplotlib.use("Agg")
    except ImportError:
        return _fail(
            "drawing needs matplotlib: pip install 'music-tagger[explain]' (or .[explain])", 2
        )
    if args.max_columns < 8:
        return _fail("--max-columns must be at least 8", 2)
    from pydantic import ValidationError

    from app.pipeline.settings import ModelSettings

    try:
        overrides = {"checkpoint": args.checkpoint} if args.checkpoint else {}
        settings = ModelSettings(**overrides)
    except ValidationError as error:
        return _fail(f"invalid settings:\n{error}", 2)
    if not settings.checkpoint.is_file():
        return _fail(f"checkpoint not found: {settings.checkpoint}", 2)
    if not args.file.is_file():
        return _fail(f"no such file: {args.file}", 1)

    # Imported here: torch takes seconds to import.
    import torch

    from app.pipeline.explain import ExplainRequestError, choose_method, explain_track, resolve_tags
    from model.audio.decode import AudioDecodeError, decode_audio
    from model.checkpoint import CheckpointError, load_checkpoint
    from model.explain import Explainer

    warnings.filterwarnings("ignore", message="At least one mel filterbank has all zero values")
    try:
        checkpoint = load_checkpoint(settings.checkpoint)
    except CheckpointError as error:
        return _fail(str(error), 2)
    from app.pipeline.vocabulary import Vocabulary

    vocabulary = Vocabulary(checkpoint.metadata.tags)
    names = list(vocabulary.ids)
    try:
        method = choose_method(checkpoint.model, args.method)
        indices = resolve_tags(
            args.tag, vocabulary, (), max_tags=len(names), taxonomy=args.taxonomy
        )
    except ExplainRequestError as error:
        return _fail(str(error), 2)
    explainer = Explainer(checkpoint.model.eval())
    try:
        decoded = decode_audio(
            args.file.read_bytes(),
            sample_rate=checkpoint.model.audio.sample_rate,
            max_seconds=args.max_seconds,
        )
    except (AudioDecodeError, OSError) as error:
        return _fail(f"{args.file}: {error}", 1)
    samples = torch.from_numpy(decoded.samples)
    result = explain_track(explainer, samples, indices, names, method, max_columns=args.max_columns)
    from app.cli.explain_picture import draw

    scores = result.window_scores.mean(dim=0)
    draw(result, [float(scores[i]) for i in indices], args.file.name, args.out)
    if args.json:
        from app.cli.explain_picture import to_json

        args.json.write_text(json.dumps(to_json(result, decoded.duration_seconds)) + "\n")
    print(f"wrote {args.out} ({method} evidence for {', '.join(names[i] for i in indices)})")
    return 0
