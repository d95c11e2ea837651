"""`tagger teach`: a tag set from examples; `tagger retrain`: the same set for another base.

Exit codes: 0 taught and written, 2 refused (bad options, unusable examples: every problem is
listed) or the output could not be written.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, cast

EXIT_OK = 0
EXIT_REFUSED = 2


def add_parsers(commands: Any) -> None:
    teach = commands.add_parser(
        "teach",
        help="teach new tags from examples and write a tag set",
        description="Teach the model new tags from a folder per tag or a CSV of file,tags[,group]"
        ", measure them by grouped cross-validation and write a tag set (docs/custom-tags.md).",
    )
    teach.add_argument(
        "examples", nargs="+", type=Path, metavar="FOLDER|CSV",
        help="a folder holding one subfolder per tag (plus negatives/ and not-TAG/), or a CSV "
        "of file,tags[,group] (tags separated by ';', !TAG an explicit negative, - a negative "
        "of every tag, #ID a catalogue track with --db)",
    )  # fmt: skip
    teach.add_argument("--output", "-o", type=Path, required=True, help="tag set file to write")
    teach.add_argument("--name", help="the set's name (default: the output file's stem)")
    teach.add_argument(
        "--taxonomy", default="custom",
        help="the taxonomy its tags are named in: custom/jazz (default: custom)",
    )  # fmt: skip
    teach.add_argument(
        "--category", action="append", default=[], metavar="TAG=CATEGORY",
        help="a tag's category (genre, era, mood, instrument, vocal, tempo/dynamics, other)",
    )  # fmt: skip
    _common(teach)
    teach.add_argument("--db", type=Path, help="a catalogue: #ID examples, drawn negatives")
    teach.add_argument("--pool", type=Path, help="a folder to draw negatives from")
    teach.add_argument(
        "--draw-negatives", type=int, default=0, metavar="N",
        help="draw N random negatives from --db or --pool (default: 0)",
    )  # fmt: skip
    teach.add_argument(
        "--no-others-negative", dest="others_are_negatives", action="store_false",
        help="a positive of another tag is not a negative of this one",
    )  # fmt: skip

    retrain = commands.add_parser(
        "retrain",
        help="rebuild a tag set for another base model from the examples it recorded",
    )
    retrain.add_argument("tag_set", type=Path, help="the tag set to rebuild")
    retrain.add_argument("--output", "-o", type=Path, required=True, help="tag set file to write")
    retrain.add_argument(
        "--root", type=Path,
        help="look for examples that moved here (by file name; the content must match)",
    )  # fmt: skip
    _common(retrain)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--checkpoint", type=Path,
        help="the base checkpoint (TAGGER_CHECKPOINT; default: the bundled model)",
    )  # fmt: skip
    parser.add_argument("--folds", type=int, default=5, help="cross-validation folds (5)")
    parser.add_argument("--seed", type=int, default=0, help="folds and training seed (0)")
    parser.add_argument(
        "--query-steps", type=int, metavar="N",
        help="training steps of each new query (default: 150, app.teach.fit.FitConfig)",
    )  # fmt: skip
    parser.add_argument(
        "--cache", type=Path,
        help="where the frozen model's per-window output is kept (default: "
        "$XDG_CACHE_HOME/music-tagger/teach)",
    )  # fmt: skip
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: all)")
    parser.add_argument("--report", type=Path, help="also write the measured quality as JSON")
    parser.add_argument("--no-progress", dest="progress", action="store_false")


def _say(message: str) -> None:
    print(f"tagger: {message}", file=sys.stderr)


def _refuse(problems: list[str]) -> int:
    _say("cannot teach:")
    for problem in problems:
        print(f"  - {problem}", file=sys.stderr)
    return EXIT_REFUSED


def _checkpoint_path(args: argparse.Namespace) -> Path:
    if args.checkpoint is not None:
        return cast(Path, args.checkpoint)
    from app.pipeline.settings import ModelSettings

    return ModelSettings().checkpoint  # TAGGER_CHECKPOINT, else the bundled model


def run_teach(args: argparse.Namespace) -> int:
    from app.teach.examples import (
        ExampleError,
        ExampleSet,
        draw_negatives,
        folder_pool,
        from_csv,
        from_folder,
    )
    from model.tags import CATEGORIES

    problems: list[str] = []
    categories: dict[str, Any] = {}
    for item in args.category:
        tag, _, category = item.partition("=")
        if category not in CATEGORIES:
            problems.append(f"--category {item}: category must be one of {', '.join(CATEGORIES)}")
        categories[tag] = category
    if args.draw_negatives < 0:
        problems.append("--draw-negatives must be at least 0")
    if args.draw_negatives and args.db is None and args.pool is None:
        problems.append("--draw-negatives needs --db or --pool to draw from")
    if problems:
        return _refuse(problems)
    catalogue = _catalogue_paths(args.db) if args.db is not None else None
    if isinstance(catalogue, str):
        return _refuse([catalogue])
    examples = ExampleSet()
    for source in args.examples:
        try:
            if source.suffix.lower() == ".csv":
                examples.extend(from_csv(source, catalogue))
            else:
                examples.extend(from_folder(source))
        except ExampleError as error:
            problems.append(str(error))
    if problems:
        return _refuse(problems)
    if args.draw_negatives:
        try:
            pool = list(catalogue.values()) if catalogue else folder_pool(args.pool)
        except ExampleError as error:
            return _refuse([str(error)])
        taken = [e.path for e in examples.examples]
        examples.extend(draw_negatives(pool, args.draw_negatives, taken, seed=args.seed))
    return _teach(
        args,
        examples,
        name=args.name or args.output.stem,
        taxonomy=args.taxonomy,
        categories=categories,
        others_are_negatives=args.others_are_negatives,
    )


def _catalogue_paths(db: Path) -> dict[int, str] | str:
    from app.catalog.store import CatalogError, CatalogStore

    try:
        store = CatalogStore(db, readonly=True)
    except CatalogError as error:
        return str(error)
    try:
        ids = [track_id for track_id, _ in store.embeddings()]
        return {track_id: track.path for track_id, track in store.tracks(ids).items()}
    finally:
        store.close()


def run_retrain(args: argparse.Namespace) -> int:
    from app.teach.examples import Example, ExampleSet
    from app.teach.features import file_sha256
    from model.tagset import TagSetError, load_tag_set

    try:
        old = load_tag_set(args.tag_set)
    except TagSetError as error:
        return _refuse([str(error)])
    examples = ExampleSet()
    problems = []
    for record in old.examples:
        example = Example.from_record(record)
        path = Path(example.path)
        if not path.is_file() and args.root is not None:
            moved = sorted(args.root.rglob(path.name))
            path = next((p for p in moved if file_sha256(p) == record["sha256"]), path)
        if not path.is_file():
            problems.append(f"{example.path}: recorded example not found (use --root)")
            continue
        if file_sha256(path) != record["sha256"]:
            problems.append(f"{path}: the file changed since the set was taught")
            continue
        examples.add(Example(**{**example.__dict__, "path": str(path)}))
    if problems:
        return _refuse(problems)
    teach_config = old.provenance.get("teach_config") or {}
    return _teach(
        args,
        examples,
        name=old.name,
        taxonomy=old.taxonomy,
        categories={t.tag.name: t.tag.category for t in old.tags},
        others_are_negatives=bool(teach_config.get("others_are_negatives", True)),
    )


def _teach(
    args: argparse.Namespace,
    examples: Any,
    *,
    name: str,
    taxonomy: str,
    categories: dict[str, Any],
    others_are_negatives: bool,
) -> int:
    import torch
    from tqdm import tqdm

    from app.teach.features import FeatureCache
    from app.teach.fit import FitConfig
    from app.teach.teach import TeachConfig, TeachError, teach
    from model.checkpoint import CheckpointError, load_checkpoint
    from model.tagset import save_tag_set

    if args.folds < 2:
        return _refuse([f"--folds must be at least 2, got {args.folds}"])
    if args.query_steps is not None and args.query_steps < 1:
        return _refuse([f"--query-steps must be at least 1, got {args.query_steps}"])
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        checkpoint = load_checkpoint(_checkpoint_path(args))
        cache = FeatureCache(checkpoint, args.cache)
    except (CheckpointError, ValueError) as error:
        return _refuse([str(error)])
    config = TeachConfig(
        folds=args.folds,
        seed=args.seed,
        others_are_negatives=others_are_negatives,
        fit=FitConfig() if args.query_steps is None else FitConfig(query_steps=args.query_steps),
    )
    tags = examples.tags
    _say(
        f"teaching {len(tags)} tag(s) ({', '.join(tags) or 'none'}) on {checkpoint.model_id} "
        f"from {len(examples.examples)} files"
    )
    files = tqdm(
        total=len(examples.examples), unit="file", desc="model output per window",
        disable=not args.progress, file=sys.stderr,
    )  # fmt: skip
    fits = tqdm(
        total=len(tags) * (args.folds + 1), unit="fit", desc="training",
        disable=not args.progress, file=sys.stderr,
    )  # fmt: skip
    started = time.monotonic()
    try:
        taught = teach(
            checkpoint,
            examples,
            cache,
            name=name,
            taxonomy=taxonomy,
            categories=categories,
            config=config,
            file_progress=lambda _: _advance(files),
            fit_progress=lambda what: _advance(fits, what),
        )
    except TeachError as error:
        files.close()
        fits.close()
        return _refuse(error.problems)
    files.close()
    fits.close()
    seconds = time.monotonic() - started
    try:
        save_tag_set(args.output, taught.tag_set)
        if args.report is not None:
            report = {r.name: r.to_dict() for r in taught.reports}
            args.report.write_text(json.dumps(report, indent=2) + "\n")
    except OSError as error:
        _say(f"cannot write {args.output}: {error.strerror or error}")
        return EXIT_REFUSED
    _print_reports(taught.reports, taxonomy)
    _say(
        f"wrote {args.output} ({len(taught.reports)} tags) in {seconds:.0f} s; frozen model "
        f"output cached for {taught.cache_hits} files, computed for {taught.cache_misses}"
    )
    return EXIT_OK


def _print_reports(reports: list[Any], taxonomy: str) -> None:
    print(
        f"{'tag':<24} {'pos':>4} {'neg':>4} {'folds':>5}  {'query ROC / PR-AUC':<22} "
        f"{'probe ROC / PR-AUC':<22} {'ships':<6} threshold"
    )
    for r in reports:
        print(
            f"{taxonomy + '/' + r.name:<24} {r.positives:>4} {r.negatives:>4} {r.folds:>5}  "
            f"{_cell(r.query):<22} {_cell(r.probe):<22} {r.scorer:<6} {r.threshold:.3f}"
        )
        for warning in r.warnings:
            print(f"  warning: {warning}")


def _cell(quality: Any) -> str:
    """`mean±sd / mean` of a scorer's per-fold ROC-AUC and PR-AUC."""
    spread = quality.to_dict()["roc_auc_sd"]
    return f"{quality.mean_roc_auc:.3f}±{spread:.3f} / {quality.mean_pr_auc:.3f}"


def _advance(bar: Any, what: str | None = None) -> None:
    if what is not None:
        bar.set_postfix_str(what, refresh=False)
    bar.update(1)
