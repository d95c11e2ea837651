"""`train`, `evaluate`, `export`, `compare`: runs of the one training loop and their models."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from model.checkpoint import load_checkpoint
from model.runtime import resolve_precision
from model.zoo import preset_names
from training import distributed
from training.cli.common import RECIPE_FLAGS, configure_logging, flag_layer, parse_sets
from training.compare import compare, resolve_entries
from training.config import RESUMABLE_FIELDS, ConfigError, make_config, read_config_file
from training.data.store import DatasetError, PreparedDataset
from training.evaluate import evaluate_split
from training.export import finalize
from training.metrics import format_summary, per_tag_markdown, write_report
from training.run import RunDir, load_run_model, read_run_config
from training.train import train


def add_recipe_options(parser: argparse.ArgumentParser) -> None:
    """Flags that override the config file; omitted flags leave the file/defaults alone."""
    parser.add_argument("--config", help="TOML or JSON file with training settings")
    parser.add_argument("--data", help="prepared dataset directory")
    parser.add_argument("--schedule", choices=("onecycle", "won"))
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--batch-size", type=int, dest="batch_size")
    parser.add_argument("--lr", type=float)
    parser.add_argument("--weight-decay", type=float, dest="weight_decay")
    parser.add_argument("--targets", choices=("hard", "soft"), help="0/1 labels or soft targets")
    parser.add_argument(
        "--select-by", choices=("pr_auc", "roc_auc", "loss", "agreement"), dest="select_by"
    )
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


def register(commands: Any) -> None:
    """Add the run subcommands to `commands` (an argparse subparsers action)."""
    train = commands.add_parser("train", help="train one model")
    train.add_argument("--preset", choices=preset_names())
    train.add_argument("--out", help="run directory")
    add_recipe_options(train)
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
    add_recipe_options(compare)
    train.set_defaults(handler=_cmd_train)
    evaluate.set_defaults(handler=_cmd_evaluate)
    export.set_defaults(handler=_cmd_export)
    compare.set_defaults(handler=_cmd_compare)


def _cmd_train(args: argparse.Namespace) -> None:
    if args.resume:
        saved = read_run_config(RunDir(args.resume))
        changes = {"stop_after_epoch": args.stop_after_epoch, **flag_layer(args, RECIPE_FLAGS)}
        if args.no_export:
            changes["export"] = False
        changes.update(parse_sets(args.set))
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
        flags = flag_layer(args, (*RECIPE_FLAGS, "preset", "out", "stop_after_epoch"))
        if args.no_export:
            flags["export"] = False
        config = make_config(*layers, flags, parse_sets(args.set))
        if not config.data or not config.out:
            raise ConfigError("train needs --data and --out (or data and out in the config file)")
        resume = False
    with distributed.session(config.device) as env:
        configure_logging(env.rank)
        # Quiet passages produce denormal floats, which make CPU convolutions up to 10x slower.
        # The switch is process-wide: set for this run only (`main` also runs inside tests).
        flushed = env.device.type == "cpu" and torch.set_flush_denormal(True)
        try:
            result = train(config, env, resume=resume)
        finally:
            if flushed:
                torch.set_flush_denormal(False)
        if env.is_main and result.completed and result.final is not None:
            exported = result.final.get("exported")
            print(f"finished: metrics in {result.run_dir / 'metrics.json'}", end="")
            print(f", model exported to {exported}" if exported else "")


def _cmd_evaluate(args: argparse.Namespace) -> None:
    data = PreparedDataset.open(args.data)
    with distributed.session(args.device) as env:
        configure_logging(env.rank)
        path = Path(args.model)
        if path.is_dir():
            model, _, _ = load_run_model(RunDir(path))
            tag_names = data.tag_names
        else:
            checkpoint = load_checkpoint(path, device="cpu")
            model = checkpoint.model
            tag_names = tuple(tag.id for tag in checkpoint.metadata.tags)
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
        configure_logging(env.rank)
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
        flag_layer(args, RECIPE_FLAGS),
        parse_sets(args.set),
        {"preset": entries[0][1], "out": args.out},
    )
    if not config.data:
        raise ConfigError("compare needs --data (or data in the config file)")
    with distributed.session(config.device) as env:
        configure_logging(env.rank)
        compare(names, args.repeats, config, args.out, env, overrides=overrides, variants=variants)
