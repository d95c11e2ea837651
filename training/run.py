"""The run directory: what a training run writes, and how to read it back.

    config.json          the resolved TrainConfig, the model config and the dataset summary
    log.csv              one row per epoch: losses, validation ROC-AUC/PR-AUC (and agreement),
                         seconds
    last.pt              everything needed to resume (weights, optimizer, schedule, RNG, history)
    best.pt              weights of the best epoch so far (by `select_by`)
    epoch-NNN.pt         weights of every epoch, only with `keep_epoch_checkpoints`
    metrics.json         final validation and test metrics of the best model, thresholds
    {valid,test}_*       per-tag tables (CSV and Markdown) and metrics JSON
    model.safetensors    the exported checkpoint in the service's format
    weights-rankN.sha256 digest of the final weights of each process (all equal under DDP)

`.pt` files are written atomically and read with `torch.load(weights_only=True)`: they hold
only tensors and plain Python values.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from model.base import TaggingModel
from model.runtime import resolve_precision
from model.zoo import build_model, config_for
from training.config import ConfigError, TrainConfig, config_from_dict

LOG_FIELDS = (
    "epoch",
    "stage",
    "lr",
    "train_loss",
    "val_loss",
    "val_roc_auc",
    "val_pr_auc",
    "train_seconds",
    "val_seconds",
    "seconds",
    "best",
    "val_agreement",  # only with select_by = "agreement"; last, so older logs are a prefix
)


class RunError(ValueError):
    """A run directory that cannot be used as asked; the message says why."""


class RunDir:
    """Paths inside one run directory."""

    def __init__(self, root: str | Path) -> None:
        if not str(root):
            raise RunError("no run directory given (--out)")
        self.root = Path(root)

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def log(self) -> Path:
        return self.root / "log.csv"

    @property
    def last(self) -> Path:
        return self.root / "last.pt"

    @property
    def best(self) -> Path:
        return self.root / "best.pt"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.json"

    @property
    def model(self) -> Path:
        return self.root / "model.safetensors"

    def epoch(self, epoch: int) -> Path:
        return self.root / f"epoch-{epoch:03d}.pt"

    def digest(self, rank: int) -> Path:
        return self.root / f"weights-rank{rank}.sha256"


def save_atomic(obj: Any, path: Path) -> None:
    """torch.save to a temporary file, then rename: a crash never leaves half a checkpoint."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load_pt(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise RunError(f"{path} not found")
    data = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(data, dict):
        raise RunError(f"{path} is not a training checkpoint")
    return data


def write_log(path: Path, history: Sequence[Mapping[str, Any]]) -> None:
    """Rewrite the whole CSV from the history, so it always matches the last checkpoint."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=LOG_FIELDS, lineterminator="\n")
        writer.writeheader()
        for row in history:
            writer.writerow({key: _csv_value(row.get(key)) for key in LOG_FIELDS})
    os.replace(tmp, path)


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


def read_log(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def read_run_config(run: RunDir) -> TrainConfig:
    """The TrainConfig a run was started with."""
    if not run.config.is_file():
        raise RunError(f"{run.root} is not a run directory (no config.json)")
    document = json.loads(run.config.read_text())
    return config_from_dict(document["train"])


def build_run_model(config: TrainConfig, n_classes: int) -> TaggingModel:
    """A fresh network as the run defines it (preset + overrides + the data's tag count).

    Raises:
        ConfigError: the model overrides do not fit the preset's config.
    """
    try:
        model_config = config_for(config.preset, {**config.model, "n_classes": n_classes})
    except ValueError as error:
        raise ConfigError(f"model settings for {config.preset}: {error}") from error
    return build_model(config.preset, model_config)


def load_run_model(run: RunDir, which: str = "best") -> tuple[TaggingModel, TrainConfig, int]:
    """The network of a run with the weights of its best (or last) epoch.

    Returns:
        (model on the CPU in eval mode, the run's config, the epoch the weights are from)
    """
    config = read_run_config(run)
    if which not in ("best", "last"):
        raise RunError(f"which must be 'best' or 'last', got {which!r}")
    state = load_pt(run.best if which == "best" else run.last)
    document = json.loads(run.config.read_text())
    model = build_run_model(config, int(document["model_config"]["n_classes"]))
    model.load_state_dict(state["model"])
    return model.eval(), config, int(state["epoch"])


def state_digest(model: torch.nn.Module) -> str:
    """sha256 over every parameter and buffer (name, dtype, shape, bytes)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        tensor = tensor.detach().contiguous().cpu()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def autocast_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    """The run's autocast dtype (None: fp32) for training and evaluation alike."""
    return resolve_precision(config.precision, device, cpu_autocast=config.cpu_autocast)
