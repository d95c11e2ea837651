"""What the subcommands share: settings layers from flags, logging, worker counts."""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import Sequence
from typing import Any

from training.config import ConfigError

log = logging.getLogger("training")


def default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def parse_sets(items: Sequence[str]) -> dict[str, Any]:
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


RECIPE_FLAGS = (
    "data",
    "schedule",
    "epochs",
    "batch_size",
    "lr",
    "weight_decay",
    "targets",
    "select_by",
    "eval_crops",
    "seed",
    "num_workers",
    "precision",
    "device",
)


def flag_layer(args: argparse.Namespace, names: Sequence[str]) -> dict[str, Any]:
    layer = {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}
    if getattr(args, "no_progress", False):
        layer["progress"] = False
    return layer


def configure_logging(rank: int) -> None:
    # Under torchrun only rank 0 narrates; the others speak up for warnings and errors.
    level = logging.INFO if rank == 0 else logging.WARNING
    prefix = f"[rank {rank}] " if int(os.environ.get("WORLD_SIZE", "1")) > 1 else ""
    logging.basicConfig(
        level=level, format=f"%(asctime)s {prefix}%(levelname)s %(message)s", force=True
    )
