"""Command line: `python -m training <command>`; every command works under `torchrun` too.

prepare-mtat      MagnaTagATune folder (+ Won et al.'s split files) -> prepared dataset
prepare-manifest  own audio + manifest + vocabulary -> prepared dataset
prepare-distill   the default model's teacher-labelled cache (data/distill) -> prepared dataset
train             one run (paper's recipe by default; --config for a TOML/JSON file)
evaluate          a checkpoint or run on one split: macro ROC/PR-AUC and a per-tag table
export            a run's best model -> service checkpoint (calibrated thresholds)
compare           several models × seeds with one recipe -> results table and plot
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from model.checkpoint import CheckpointError, load_checkpoint
from model.runtime import resolve_precision
from model.zoo import preset_names
from training import distributed
from training.compare import compare, resolve_entries
from training.config import RESUMABLE_FIELDS, ConfigError, make_config, read_config_file
from training.data.distilled import DEFAULT_MIN_POSITIVES, DEFAULT_THRESHOLD, prepare_distilled
from training.data.manifest import prepare_manifest
from training.data.mtat import prepare_mtat
from training.data.store import DatasetError, PreparedDataset
from training.evaluate import evaluate_split
from training.export import finalize
from training.metrics import format_summary, per_tag_markdown, write_report
from training.run import RunDir, RunError, load_run_model, read_run_config
from training.train import train

log = logging.getLogger("training")


def _default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def _add_prepare_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="directory to create for the prepared data")
    parser.add_argument("--dtype", choices=("int16", "float16"), default="int16")
    parser.add_argument(
        "--workers", type=int, default=_default_workers(), help="parallel decoding processes"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing dataset")
    parser.add_argument("--no-progress", action="store_true")


def _add_recipe_options(parser: argparse.ArgumentParser) -> None:
    """Flags that override the config file; omitted flags leave the file/defaults alone."""
    parser.add_argument("--config", help="TOML or JSON file with training settings")
    parser.add_argument("--data", help="prepared dataset directory")
    parser.add_argument("--schedule", choices=("onecycle", "won"))
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--batch-size", type=int, dest="batch_size")
    parser.add_argument("--lr", type=float)
    parser.add_argument("--weight-decay", type=float, dest="weight_decay")
    parser.add_argument("--select-by", choices=("pr_auc", "roc_auc", "loss"), dest="select_by")
    parser.add_argument("--eval-crops", type=int, dest="eval_crops")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--workers", type=int, dest="num_workers", help="DataLoader workers")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"))
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"))
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other setting; VALUE is JSON or a plain string; model.KEY sets a model field",
    )
    parser.add_argument("--no-progress", action="store_true")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    mtat = commands.add_parser("prepare-mtat", help="decode MagnaTagATune once into a dataset")
    mtat.add_argument("--mtat", required=True, help="folder with 0..f (or mp3/0..f)")
    mtat.add_argument("--annotations", help="annotations_final.csv (default: in --mtat)")
    mtat.add_argument("--split", choices=("won", "folders"), default="won")
    mtat.add_argument(
        "--won-split", help="folder with Won et al.'s train/valid/test/binary/tags.npy"
    )
    mtat.add_argument(
        "--allow-other-counts",
        action="store_true",
        help="accept split files whose valid/test counts are not 1,529/4,332",
    )
    _add_prepare_options(mtat)

    manifest = commands.add_parser("prepare-manifest", help="decode own audio into a dataset")
    manifest.add_argument("--manifest", required=True, help="CSV or JSONL: path, tags, split")
    manifest.add_argument("--vocabulary", required=True, help=".txt (one tag per line) or .json")
    manifest.add_argument("--valid-fraction", type=float, default=0.1)
    manifest.add_argument("--test-fraction", type=float, default=0.1)
    manifest.add_argument("--split-seed", type=int, default=0)
    _add_prepare_options(manifest)

    distill = commands.add_parser(
        "prepare-distill", help="the teacher-labelled distillation cache as a dataset"
    )
    distill.add_argument("--cache", default="data/distill", help="distillation cache folder")
    distill.add_argument("--out", required=True, help="directory to create for the dataset")
    for split in ("train", "valid", "test"):
        distill.add_argument(
            f"--{split}-windows",
            type=int,
            dest=f"{split}_windows",
            help=f"random subset of at most this many {split} windows (default: all)",
        )
    distill.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD)
    distill.add_argument("--min-positives", type=int, default=DEFAULT_MIN_POSITIVES)
    distill.add_argument("--seed", type=int, default=0, help="seed of the window subsets")
    distill.add_argument("--overwrite", action="store_true", help="replace an existing dataset")

    train = commands.add_parser("train", help="train one model")
    train.add_argument("--preset", choices=preset_names())
    train.add_argument("--out", help="run directory")
    _add_recipe_options(train)
    train.add_argument("--stop-after-epoch", type=int, dest="stop_after_epoch")
    train.add_argument("--no-export", action="store_true", help="do not export at the end")
    train.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run")

    evaluate = commands.add_parser("evaluate", help="evaluate a checkpoint on one split")
    evaluate.add_argument("--model", required=True, help=".safetensors checkpoint or run dir")
    evaluate.add_argument("--data", required=True)
    evaluate.add_argument("--split", choices=("train", "valid", "test"), default="test")
    evaluate.add_argument("--out", help="write metrics JSON and per-tag tables here")
    evaluate.add_argument("--eval-crops", type=int, default=16)
    evaluate.add_argument("--eval-batch", type=int, default=64)
    evaluate.add_argument("--workers", type=int, default=0)
    evaluate.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default="auto")
    evaluate.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    evaluate.add_argument("--no-progress", action="store_true")

    export = commands.add_parser("export", help="export a run's model for the service")
    export.add_argument("--run", required=True, help="run directory")
    export.add_argument("--out", help="checkpoint path (default: RUN/model.safetensors)")
    export.add_argument("--which", choices=("best", "last"), default="best")
    export.add_argument("--data", help="prepared dataset (default: the one the run used)")
    export.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    export.add_argument("--no-progress", action="store_true")

    compare = commands.add_parser("compare", help="compare models over repeated runs")
    compare.add_argument("--models", required=True, help="comma-separated presets")
    compare.add_argument("--repeats", type=int, default=4)
    compare.add_argument("--out", required=True, help="folder for all runs and the results")
    _add_recipe_options(compare)
    return parser


def _parse_sets(items: Sequence[str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        if key.startswith("model."):
            values.setdefault("model", {})[key.removeprefix("model.")] = value
        else:
            values[key] = value
    return values


_RECIPE_FLAGS = (
    "data",
    "schedule",
    "epochs",
    "batch_size",
    "lr",
    "weight_decay",
    "select_by",
    "eval_crops",
    "seed",
    "num_workers",
    "precision",
    "device",
)


def _flag_layer(args: argparse.Namespace, names: Sequence[str]) -> dict[str, Any]:
    layer = {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}
    if getattr(args, "no_progress", False):
        layer["progress"] = False
    return layer


def _cmd_prepare_mtat(args: argparse.Namespace) -> None:
    dataset = prepare_mtat(
        args.mtat,
        args.out,
        split=args.split,
        won_dir=args.won_split,
        annotations_path=args.annotations,
        check_counts=not args.allow_other_counts,
        dtype=args.dtype,
        workers=args.workers,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    _report_dataset(dataset)


def _cmd_prepare_manifest(args: argparse.Namespace) -> None:
    dataset = prepare_manifest(
        args.manifest,
        args.vocabulary,
        args.out,
        valid_fraction=args.valid_fraction,
        test_fraction=args.test_fraction,
        seed=args.split_seed,
        dtype=args.dtype,
        workers=args.workers,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    _report_dataset(dataset)


def _cmd_prepare_distill(args: argparse.Namespace) -> None:
    dataset = prepare_distilled(
        args.cache,
        args.out,
        limits={s: getattr(args, f"{s}_windows") for s in ("train", "valid", "test")},
        threshold=args.threshold,
        min_positives=args.min_positives,
        seed=args.seed,
        overwrite=args.overwrite,
    )
    _report_dataset(dataset)
    print(f"tags: {', '.join(dataset.tag_names)}")


def _report_dataset(dataset: PreparedDataset) -> None:
    clips = dataset.info["clips"]
    hours = dataset.info["total_samples"] / dataset.sample_rate / 3600
    skipped = [entry["path"] for entry in dataset.info["skipped"]]
    listed = f" ({', '.join(skipped[:3])}{', ...' if len(skipped) > 3 else ''})" if skipped else ""
    print(
        f"prepared {dataset.root}: {clips['train']} train, {clips['valid']} valid, "
        f"{clips['test']} test clips ({hours:.1f} h of audio, {dataset.n_classes} tags); "
        f"{len(skipped)} files skipped{listed}"
    )


def _cmd_train(args: argparse.Namespace) -> None:
    if args.resume:
        saved = read_run_config(RunDir(args.resume))
        changes = {"stop_after_epoch": args.stop_after_epoch, **_flag_layer(args, _RECIPE_FLAGS)}
        if args.no_export:
            changes["export"] = False
        changes.update(_parse_sets(args.set))
        changed = {k for k, v in changes.items() if v is not None and v != getattr(saved, k)}
        if changed - RESUMABLE_FIELDS:
            raise ConfigError(
                f"cannot change {', '.join(sorted(changed - RESUMABLE_FIELDS))} when resuming; "
                f"only {', '.join(sorted(RESUMABLE_FIELDS))} may change"
            )
        base = saved.to_dict()
        config = make_config(base, {k: v for k, v in changes.items() if k in RESUMABLE_FIELDS})
        resume = True
    else:
        layers: list[dict[str, Any]] = [read_config_file(args.config)] if args.config else []
        flags = _flag_layer(args, (*_RECIPE_FLAGS, "preset", "out", "stop_after_epoch"))
        if args.no_export:
            flags["export"] = False
        config = make_config(*layers, flags, _parse_sets(args.set))
        if not config.data or not config.out:
            raise ConfigError("train needs --data and --out (or data and out in the config file)")
        resume = False
    with distributed.session(config.device) as env:
        _configure_logging(env.rank)
        result = train(config, env, resume=resume)
        if env.is_main and result.completed and result.final is not None:
            exported = result.final.get("exported")
            print(f"finished: metrics in {result.run_dir / 'metrics.json'}", end="")
            print(f", model exported to {exported}" if exported else "")


def _cmd_evaluate(args: argparse.Namespace) -> None:
    data = PreparedDataset.open(args.data)
    with distributed.session(args.device) as env:
        _configure_logging(env.rank)
        path = Path(args.model)
        if path.is_dir():
            model, _, _ = load_run_model(RunDir(path))
            tag_names = data.tag_names
        else:
            checkpoint = load_checkpoint(path, device="cpu")
            model = checkpoint.model
            tag_names = tuple(tag.name for tag in checkpoint.metadata.tags)
        if tag_names != data.tag_names:
            raise DatasetError(
                f"{path} predicts tags {', '.join(tag_names[:5])}... but {data.root} is labelled "
                f"with {', '.join(data.tag_names[:5])}...: the vocabularies differ"
            )
        model.to(env.device)
        metrics, _ = evaluate_split(
            model,
            data,
            args.split,
            env,
            n_crops=args.eval_crops,
            eval_batch=args.eval_batch,
            dtype=resolve_precision(args.precision, env.device, cpu_autocast=False),
            num_workers=args.workers,
            progress=not args.no_progress and env.is_main,
        )
        if env.is_main:
            if args.out:
                write_report(args.out, args.split, metrics)
            print(per_tag_markdown(metrics))
            print(format_summary(metrics, args.split))


def _cmd_export(args: argparse.Namespace) -> None:
    run = RunDir(args.run)
    model, config, epoch = load_run_model(run, args.which)
    changes: dict[str, Any] = {"progress": False} if args.no_progress else {}
    if args.data:
        changes["data"] = args.data
    config = make_config(config.to_dict(), changes)
    data = PreparedDataset.open(config.data)
    out = Path(args.out) if args.out else run.model
    with distributed.session(args.device) as env:
        _configure_logging(env.rank)
        # Reports of the last epoch's model must not overwrite those of the best model.
        reports = run.root if args.which == "best" else run.root / "last"
        finalize(model, config, data, env, reports, best_epoch=epoch, export_to=out)
        if env.is_main:
            print(f"exported {out}")


def _cmd_compare(args: argparse.Namespace) -> None:
    file_layer: dict[str, Any] = read_config_file(args.config) if args.config else {}
    overrides = file_layer.pop("overrides", {})
    if not isinstance(overrides, dict):
        raise ConfigError("overrides in the config file must be a table of tables per preset")
    variants = file_layer.pop("variants", {})
    if not isinstance(variants, dict) or not all(isinstance(v, dict) for v in variants.values()):
        raise ConfigError("variants in the config file must be a table of tables per name")
    names = [name.strip() for name in args.models.split(",") if name.strip()]
    entries = resolve_entries(names, variants)
    config = make_config(
        file_layer,
        _flag_layer(args, _RECIPE_FLAGS),
        _parse_sets(args.set),
        {"preset": entries[0][1], "out": args.out},
    )
    if not config.data:
        raise ConfigError("compare needs --data (or data in the config file)")
    with distributed.session(config.device) as env:
        _configure_logging(env.rank)
        compare(names, args.repeats, config, args.out, env, overrides=overrides, variants=variants)


def _configure_logging(rank: int) -> None:
    # Under torchrun only rank 0 narrates; the others speak up for warnings and errors.
    level = logging.INFO if rank == 0 else logging.WARNING
    prefix = f"[rank {rank}] " if int(os.environ.get("WORLD_SIZE", "1")) > 1 else ""
    logging.basicConfig(
        level=level, format=f"%(asctime)s {prefix}%(levelname)s %(message)s", force=True
    )


COMMANDS = {
    "prepare-mtat": _cmd_prepare_mtat,
    "prepare-manifest": _cmd_prepare_manifest,
    "prepare-distill": _cmd_prepare_distill,
    "train": _cmd_train,
    "evaluate": _cmd_evaluate,
    "export": _cmd_export,
    "compare": _cmd_compare,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit status (2 with a one-line message for bad input)."""
    args = build_parser().parse_args(argv)
    # Quiet passages make subnormal floats in the spectrogram; on CPU they slow the mel
    # projection and convolutions by up to 10x. Flushing them to zero changes no result we use.
    torch.set_flush_denormal(True)
    _configure_logging(int(os.environ.get("RANK", "0")))
    try:
        COMMANDS[args.command](args)
    except (DatasetError, CheckpointError, ConfigError, RunError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
