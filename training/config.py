"""The typed configuration of a training run, loadable from TOML or JSON.

Defaults are the paper's recipe (the Q2L repository's `main.py`/`solver.py`): BCE on logits,
Adam with lr 1e-4 and L2 weight decay 1e-4, a one-cycle schedule with 20 % warm-up stepped per
batch, batch 16, 20 epochs. `schedule = "won"` switches to Won et al.'s long schedule: Adam,
then SGD stages with the best model reloaded at every switch (model-spec §2.8).

A config file holds any subset of the `TrainConfig` fields; the `[model]` table overrides fields
of the preset's model config (e.g. `backbone_channels`), and Won's stages are an array of tables:

    preset = "rescnn"
    schedule = "won"
    [[stages]]
    epochs = 80
    optimizer = "adam"
    lr = 1e-4
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

Schedule = Literal["onecycle", "won"]
SelectBy = Literal["pr_auc", "roc_auc", "loss", "agreement"]
Targets = Literal["hard", "soft"]
Precision = Literal["auto", "fp32", "bf16", "fp16"]
OptimizerName = Literal["adam", "sgd"]


class ConfigError(ValueError):
    """Settings that cannot be used; the message names the setting and what is expected."""


@dataclass(frozen=True)
class Stage:
    """One stage of Won et al.'s schedule: `epochs` epochs of `optimizer` at a constant `lr`."""

    epochs: int
    optimizer: OptimizerName
    lr: float

    def __post_init__(self) -> None:
        if self.epochs <= 0:
            raise ValueError(f"a stage needs a positive number of epochs, got {self.epochs}")
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"stage optimizer must be 'adam' or 'sgd', got {self.optimizer!r}")
        if self.lr <= 0:
            raise ValueError(f"stage lr must be positive, got {self.lr}")


# Won et al.'s solver: 80 epochs of Adam, then SGD at 1e-3, 1e-4 and 1e-5 (200 epochs in all).
WON_STAGES: tuple[Stage, ...] = (
    Stage(80, "adam", 1e-4),
    Stage(20, "sgd", 1e-3),
    Stage(20, "sgd", 1e-4),
    Stage(80, "sgd", 1e-5),
)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run.

    Attributes:
        preset: Model preset from `model.zoo.PRESETS`.
        data: Directory of a prepared dataset (`prepare-mtat` or `prepare-manifest`).
        out: Run directory (log, checkpoints, exported model).
        model: Overrides of the preset's model config; `n_classes` comes from the data.
        schedule: "onecycle" (the paper) or "won" (Won et al.'s Adam -> SGD stages).
        epochs: Length of the one-cycle schedule (the Won schedule's length is its stages').
        batch_size: Training windows per step and process.
        lr: Peak learning rate of the one-cycle schedule.
        weight_decay: L2 penalty of Adam and SGD (coupled, as the reference code).
        warmup: Fraction of the one-cycle schedule spent warming up (OneCycleLR's pct_start).
        momentum: SGD momentum (Nesterov) in the Won schedule.
        stages: The Won schedule's stages.
        targets: "hard" (the dataset's 0/1 labels) or "soft" (its float targets, e.g. a teacher's
            probabilities from `prepare-distill --soft`); either way the loss is BCE with logits.
        select_by: Validation metric that picks the best model: "pr_auc", "roc_auc", "loss" or
            "agreement" (macro ROC-AUC over the tags with at least 10 positive validation clips,
            the distilled model's agreement with its teacher).
        eval_crops: Evenly spaced crops per clip in validation and test (Won et al.: 16).
        eval_batch: Windows per forward pass during evaluation.
        seed: Seed of model init, shuffling, crops and dropout.
        num_workers: DataLoader worker processes per training process.
        precision: "auto" (bf16 autocast on CUDA if supported, else fp16; fp32 on CPU, for the
            same metrics on every CPU: `model.runtime.resolve_precision(..., cpu_autocast=False)`),
            or forced.
        cpu_autocast: With precision "auto", bf16 autocast also on a CPU with native bf16 (the
            inference runtime's rule; faster, but metrics then depend on the CPU).
        device: "auto" (CUDA when present), "cpu" or "cuda".
        stop_after_epoch: Stop once this many epochs are done (continue later with --resume).
        progress: Show tqdm progress bars (main process only).
        export: Export the best model to `<out>/model.safetensors` when training completes.
        keep_epoch_checkpoints: Also keep the weights of every epoch (`epoch-NNN.pt`).
    """

    preset: str = "q2l-base"
    data: str = ""
    out: str = ""
    model: dict[str, Any] = field(default_factory=dict)
    schedule: Schedule = "onecycle"
    epochs: int = 20
    batch_size: int = 16
    lr: float = 1e-4
    weight_decay: float = 1e-4
    warmup: float = 0.2
    momentum: float = 0.9
    stages: tuple[Stage, ...] = WON_STAGES
    targets: Targets = "hard"
    select_by: SelectBy = "pr_auc"
    eval_crops: int = 16
    eval_batch: int = 64
    seed: int = 0
    num_workers: int = 4
    precision: Precision = "auto"
    cpu_autocast: bool = False
    device: str = "auto"
    stop_after_epoch: int | None = None
    progress: bool = True
    export: bool = True
    keep_epoch_checkpoints: bool = False

    def __post_init__(self) -> None:
        positive = ("epochs", "batch_size", "eval_crops", "eval_batch")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.lr <= 0 or self.weight_decay < 0:
            raise ValueError("lr must be positive and weight_decay non-negative")
        if not 0.0 < self.warmup < 1.0:
            raise ValueError(f"warmup must be a fraction in (0, 1), got {self.warmup}")
        if self.num_workers < 0:
            raise ValueError("num_workers must be >= 0")
        if self.schedule == "won" and not self.stages:
            raise ValueError("the won schedule needs at least one stage")
        if self.stop_after_epoch is not None and self.stop_after_epoch <= 0:
            raise ValueError("stop_after_epoch must be positive")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {self.device!r}")
        if "n_classes" in self.model:
            raise ValueError("model.n_classes is set from the dataset's vocabulary; remove it")

    @property
    def total_epochs(self) -> int:
        if self.schedule == "won":
            return sum(stage.epochs for stage in self.stages)
        return self.epochs

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# Settings that may change when a run is resumed: they do not alter what is computed.
RESUMABLE_FIELDS = frozenset({"stop_after_epoch", "num_workers", "progress", "export", "device"})


def stage_index(stages: tuple[Stage, ...], epoch: int) -> int:
    """Which stage the 0-based `epoch` belongs to (the last stage continues past the end)."""
    end = 0
    for index, stage in enumerate(stages):
        end += stage.epochs
        if epoch < end:
            return index
    return len(stages) - 1


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The raw mapping in a `.toml` or `.json` config file.

    Raises:
        ConfigError: unreadable file, unknown suffix or invalid syntax, with the file named.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"cannot read config file {path}: {error.strerror}") from error
    try:
        if path.suffix == ".toml":
            data: Any = tomllib.loads(text)
        elif path.suffix == ".json":
            data = json.loads(text)
        else:
            raise ConfigError(f"config file {path} must end in .toml or .json")
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as error:
        raise ConfigError(f"config file {path} is not valid {path.suffix[1:]}: {error}") from error
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a table/object at the top level")
    return data


def _check_type(name: str, hint: Any, value: Any) -> Any:
    """`value` converted to `hint`, or ConfigError naming the field and the expected type."""
    origin = typing.get_origin(hint)
    if origin is Literal:
        if value not in typing.get_args(hint):
            choices = ", ".join(repr(a) for a in typing.get_args(hint))
            raise ConfigError(f"{name} must be one of {choices}, got {value!r}")
        return value
    if origin in (types.UnionType, typing.Union):
        if value is None and type(None) in typing.get_args(hint):
            return None
        inner = [a for a in typing.get_args(hint) if a is not type(None)]
        return _check_type(name, inner[0], value)
    if hint is Any:
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{name} must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name} must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{name} must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{name} must be a string, got {value!r}")
        return value
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{name} must be a table/object, got {value!r}")
        return dict(value)
    if origin is tuple:  # tuple[Stage, ...]
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{name} must be a list, got {value!r}")
        return tuple(_stage(f"{name}[{i}]", item) for i, item in enumerate(value))
    raise TypeError(f"unsupported config type {hint!r} for {name}")  # pragma: no cover


def _stage(name: str, value: Any) -> Stage:
    if isinstance(value, Stage):
        return value
    if not isinstance(value, Mapping) or set(value) != {"epochs", "optimizer", "lr"}:
        raise ConfigError(f"{name} must be a table with exactly epochs, optimizer and lr")
    try:
        return Stage(
            epochs=_check_type(f"{name}.epochs", int, value["epochs"]),
            optimizer=_check_type(f"{name}.optimizer", OptimizerName, value["optimizer"]),
            lr=_check_type(f"{name}.lr", float, value["lr"]),
        )
    except ConfigError:
        raise
    except ValueError as error:
        raise ConfigError(f"{name}: {error}") from error


def make_config(*layers: Mapping[str, Any]) -> TrainConfig:
    """A TrainConfig from mappings applied in order (defaults < file < command line).

    Raises:
        ConfigError: unknown keys (listing the known ones) or values of the wrong type.
    """
    hints = typing.get_type_hints(TrainConfig)
    merged: dict[str, Any] = {}
    for layer in layers:
        unknown = sorted(set(layer) - set(hints))
        if unknown:
            raise ConfigError(
                f"unknown training settings: {', '.join(unknown)}; "
                f"known settings: {', '.join(hints)}"
            )
        for name, value in layer.items():
            if name == "model" and isinstance(value, Mapping):
                value = {**merged.get("model", {}), **value}
            merged[name] = _check_type(name, hints[name], value)
    try:
        return TrainConfig(**merged)
    except ValueError as error:
        raise ConfigError(str(error)) from error


def config_from_dict(data: Mapping[str, Any]) -> TrainConfig:
    """Rebuild a saved config (`TrainConfig.to_dict()` through JSON)."""
    return make_config(data)
