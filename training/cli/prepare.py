"""`prepare-mtat`, `prepare-manifest`, `prepare-distill`: audio decoded once into a dataset."""

from __future__ import annotations

import argparse
from typing import Any

from training.cli.common import default_workers
from training.data.distilled import DEFAULT_MIN_POSITIVES, DEFAULT_THRESHOLD, prepare_distilled
from training.data.manifest import prepare_manifest
from training.data.mtat import prepare_mtat
from training.data.store import PreparedDataset


def add_prepare_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="directory to create for the prepared data")
    parser.add_argument("--dtype", choices=("int16", "float16"), default="int16")
    parser.add_argument(
        "--workers", type=int, default=default_workers(), help="parallel decoding processes"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing dataset")
    parser.add_argument("--no-progress", action="store_true")


def register(commands: Any) -> None:
    """Add the prepare subcommands to `commands` (an argparse subparsers action)."""
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
    add_prepare_options(mtat)

    manifest = commands.add_parser("prepare-manifest", help="decode own audio into a dataset")
    manifest.add_argument("--manifest", required=True, help="CSV or JSONL: path, tags, split")
    manifest.add_argument("--vocabulary", required=True, help=".txt (one tag per line) or .json")
    manifest.add_argument("--valid-fraction", type=float, default=0.1)
    manifest.add_argument("--test-fraction", type=float, default=0.1)
    manifest.add_argument("--split-seed", type=int, default=0)
    add_prepare_options(manifest)

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
    distill.add_argument(
        "--soft",
        action="store_true",
        help='all 50 tags with the teacher\'s soft targets (train with targets = "soft")',
    )
    mtat.set_defaults(handler=_cmd_prepare_mtat)
    manifest.set_defaults(handler=_cmd_prepare_manifest)
    distill.set_defaults(handler=_cmd_prepare_distill)


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
    report_dataset(dataset)


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
    report_dataset(dataset)


def _cmd_prepare_distill(args: argparse.Namespace) -> None:
    dataset = prepare_distilled(
        args.cache,
        args.out,
        limits={s: getattr(args, f"{s}_windows") for s in ("train", "valid", "test")},
        threshold=args.threshold,
        min_positives=args.min_positives,
        seed=args.seed,
        overwrite=args.overwrite,
        soft=args.soft,
    )
    report_dataset(dataset)
    print(f"tags: {', '.join(dataset.tag_names)}")


def report_dataset(dataset: PreparedDataset) -> None:
    clips = dataset.info["clips"]
    hours = dataset.info["total_samples"] / dataset.sample_rate / 3600
    skipped = [entry["path"] for entry in dataset.info["skipped"]]
    listed = f" ({', '.join(skipped[:3])}{', ...' if len(skipped) > 3 else ''})" if skipped else ""
    print(
        f"prepared {dataset.root}: {clips['train']} train, {clips['valid']} valid, "
        f"{clips['test']} test clips ({hours:.1f} h of audio, {dataset.n_classes} tags); "
        f"{len(skipped)} files skipped{listed}"
    )
