"""The default model v3's trainer: random crops of every track, until validation stops improving.

    python -m training train-distill --config training/experiments/default-model-v3.toml \\
        --out runs/v3-q2l-small            # a new run
    python -m training train-distill --resume runs/v3-q2l-small      # continue it
    python -m training train-distill --resume runs/v3-q2l-small --export   # best so far ->
                                                                    # model.safetensors

Each epoch trains on new crops of every labelled training track (`training.distill.crops`),
then scores the validation windows and logs a row of `epochs.csv` (the learning curve). The
best epoch by validation agreement (v2's measure: macro ROC-AUC against teacher >= 0.3 or the
ground truth, over the tags with at least 10 positive windows) is kept in `best.pt`. The
learning rate halves after `lr_patience` epochs without improvement; training stops after
`patience` such epochs (or `max_epochs`) and exports the best epoch with thresholds calibrated
on validation to `model.safetensors`. An epoch whose training set grew since the previous one
(labelling still running) never counts against patience.

`last.pt` is written every `checkpoint_every` steps and after each epoch, so a killed run (a
session's end) loses at most those steps: `--resume` continues the same epoch's crops.
Training tracks are re-read at the start of each epoch, so a run started while the cache is
still being labelled takes up new tracks as they land (the epoch log counts them); the
validation tracks are fixed when the run starts, so every epoch is measured on the same ones.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import logging
import math
import time
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from model.checkpoint import load_checkpoint, save_checkpoint
from model.q2l import Query2Label
from model.zoo import build_model, config_for
from training.data.distilled import LICENCE
from training.distill.cache import SAMPLE_RATE
from training.distill.crops import EvalSet, Track, batches, load_tracks, plan_epoch
from training.distill.data import MIN_POSITIVES, TEACHER_POSITIVE, Split
from training.distill.evaluation import agreement
from training.distill.patches import MEL_HOP
from training.distill.teachers import VOCABULARY, choice_label, read_choice
from training.export import CALIBRATION_MIN_POSITIVES
from training.metrics import calibrate_thresholds, frequent_tag_auc

log = logging.getLogger("training.distill.trainer")
VOCABULARY_INDEX = {tag.id: k for k, tag in enumerate(VOCABULARY)}

CURVE_FIELDS = (
    "epoch",
    "train_tracks",
    "train_hours",
    "crops",
    "train_loss",
    "valid_bce",
    "valid_agreement",
    "valid_mtt_track",
    "valid_msd_track",
    "lr",
    "train_seconds",
    "crops_per_second",
    "best",
)


SELECTIONS = ("window", "track")


def selection_measure(result: dict[str, Any], selection: str) -> float:
    """The number a validation `result` is ranked by (higher is better). A validation set too
    small for any tag to reach the positives a measure needs (a test's) falls back to -BCE."""
    if selection == "track":
        tracks = [result["mtt_track"], result["msd_track"]]
        if all(value is not None for value in tracks):
            return float(np.mean(tracks))
    elif result["agreement"] is not None:
        return float(result["agreement"])
    return -float(result["bce"])


@dataclass(frozen=True)
class DistillConfig:
    """A v3 distillation run (TOML keys of the same names).

    Args:
        preset: The student's preset (a q2l one: training reads log-mels).
        model: Overrides of the preset's config (e.g. a wider backbone for the capacity test).
        cache: The v3 cache (`label-patches`).
        choices: Teacher per vocabulary ("mean" or a teacher name); empty: the cache's
            `teachers.json` (`choose-teachers`).
        batch_size, lr, weight_decay: Adam with L2 weight decay, as the paper's optimiser.
        warmup_steps: Linear warm-up of the learning rate from zero.
        render_weight: Loss weight of a crop of a render (a real recording's is 1).
        crops_per_window: Crops per epoch per window of a track's audio.
        selection: The validation measure that picks the best epoch and drives patience:
            "window" (per-window agreement over both vocabularies, v2's) or "track" (the mean
            of the MTT and MSD track agreements, the gate's and the service's level).
        patience: Epochs without a better validation measure before stopping.
        lr_patience: Epochs without improvement before the learning rate halves.
        min_delta: What counts as better.
        max_epochs: Stop here in any case.
        checkpoint_every: Steps between two writes of `last.pt` within an epoch.
        threads: torch threads.
        bf16: bf16 autocast (native on CPUs with AVX-512 BF16 or AMX).
        seed: Seeds the initial weights and every epoch's crops.
        init: A checkpoint whose weights start the student ("": random): every tensor of the
            same name and shape, and the query and classifier rows of the tags it shares with
            the vocabulary; the run's curve then starts with its validation (epoch 0).
        init_taxonomy: The vocabulary of `init`'s tags where they carry none (v1's: "mtt").
    """

    preset: str = "q2l-small"
    model: dict[str, Any] = field(default_factory=dict)
    cache: str = "data/v3"
    choices: dict[str, str] = field(default_factory=dict)
    batch_size: int = 32
    lr: float = 3e-4
    weight_decay: float = 1e-4
    warmup_steps: int = 500
    render_weight: float = 0.5
    crops_per_window: float = 1.0
    selection: str = "window"
    patience: int = 4
    lr_patience: int = 2
    min_delta: float = 5e-4
    max_epochs: int = 60
    checkpoint_every: int = 100
    threads: int = 2
    bf16: bool = True
    seed: int = 0
    init: str = ""
    init_taxonomy: str = "mtt"

    def __post_init__(self) -> None:
        if self.selection not in SELECTIONS:
            raise SystemExit(f"selection = {self.selection!r}: use one of {sorted(SELECTIONS)}")

    @classmethod
    def from_toml(cls, path: Path) -> DistillConfig:
        data = tomllib.loads(path.read_text())
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SystemExit(f"{path}: unknown keys {unknown}; known: {sorted(known)}")
        return cls(**data)


def build_student(config: DistillConfig) -> Query2Label:
    overrides = {"n_classes": len(VOCABULARY), **config.model}
    model = build_model(config.preset, config_for(config.preset, overrides))
    if not isinstance(model, Query2Label):
        raise SystemExit(f"{config.preset}: v3 trains from log-mels, which needs a q2l preset")
    return model


# Per-label tensors of a Query2Label student and the dimension that runs over the labels.
LABEL_ROWS = {"query_embed.weight": 0, "classifier.weight": 1, "classifier.bias": 1}


def warm_start(model: Query2Label, path: Path, taxonomy: str = "mtt") -> list[str]:
    """Copy a checkpoint's weights into `model` (see `DistillConfig.init`); returns the ids of
    the vocabulary's tags whose rows stay untrained."""
    checkpoint = load_checkpoint(path)
    source = checkpoint.model.state_dict()
    target = model.state_dict()
    if set(source) != set(target):
        raise SystemExit(
            f"{path}: not the student's architecture (tensors only there: "
            f"{sorted(set(source) - set(target))[:5]}, only in the student: "
            f"{sorted(set(target) - set(source))[:5]})"
        )
    ids = [tag.id if tag.taxonomy else f"{taxonomy}/{tag.name}" for tag in checkpoint.metadata.tags]
    rows = {VOCABULARY_INDEX[id_]: k for k, id_ in enumerate(ids) if id_ in VOCABULARY_INDEX}
    with torch.no_grad():
        for name, tensor in target.items():
            if name in LABEL_ROWS:
                dim = LABEL_ROWS[name]
                for to, frm in rows.items():
                    tensor.select(dim, to).copy_(source[name].select(dim, frm))
            elif source[name].shape == tensor.shape:
                tensor.copy_(source[name])
            else:
                raise SystemExit(
                    f"{path}: {name} is {tuple(source[name].shape)}, the student's is "
                    f"{tuple(tensor.shape)}: not the student's architecture"
                )
    return [tag.id for k, tag in enumerate(VOCABULARY) if k not in rows]


def _autocast(config: DistillConfig) -> torch.autocast:
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.bf16)


def score(model: Query2Label, data: EvalSet, config: DistillConfig) -> np.ndarray:
    """(N, 100) probabilities of the student on the evaluated windows."""
    model.eval()
    out: list[np.ndarray] = []
    pending: list[np.ndarray] = []

    def flush() -> None:
        with torch.inference_mode(), _autocast(config):
            logits = model.forward_log_mel(torch.from_numpy(np.stack(pending)))
        out.append(torch.sigmoid(logits.float()).numpy())
        pending.clear()

    for mel in data.log_mels():
        pending.append(mel)
        if len(pending) == 64:
            flush()
    if pending:
        flush()
    return np.concatenate(out) if out else np.zeros((0, len(VOCABULARY)), np.float32)


def validate(model: Query2Label, data: EvalSet, config: DistillConfig) -> dict[str, Any]:
    """Validation agreement (the selection measure), soft BCE and track-level agreement."""
    scores = score(model, data, config)
    labels = data.agreement_labels()
    window, _ = frequent_tag_auc(labels, scores, [t.id for t in VOCABULARY], MIN_POSITIVES)
    clipped = np.clip(scores, 1e-7, 1 - 1e-7)
    targets = data.targets
    bce = float(-np.mean(targets * np.log(clipped) + (1 - targets) * np.log(1 - clipped)))
    split = Split(
        windows=np.zeros((len(scores), 0), np.int16),
        teacher=data.teacher,
        labels=data.truth,
        source_ids=data.source_ids,
        kinds=data.kinds,
        teachers={},
    )
    track = {
        taxonomy: agreement(split, scores[:, columns], taxonomy)["track"]["macro_roc_auc"]
        for taxonomy, columns in (("mtt", slice(0, 50)), ("msd", slice(50, 100)))
    }
    return {
        "agreement": window,
        "bce": bce,
        "mtt_track": track["mtt"],
        "msd_track": track["msd"],
        "scores": scores,
    }


@dataclass
class RunState:
    """What `last.pt` holds beside the weights and the optimiser."""

    epoch: int = 0  # epochs completed
    step_in_epoch: int = 0  # batches of the current epoch already trained on
    global_step: int = 0
    lr_scale: float = 1.0
    best: float = -math.inf
    best_epoch: int = 0
    bad_epochs: int = 0
    epoch_sources: list[str] = field(default_factory=list)
    epoch_loss_sum: float = 0.0
    epoch_seconds: float = 0.0
    valid_sources: list[str] = field(default_factory=list)
    last_epoch_tracks: int = 0
    done: bool = False


class Run:
    """One run directory: config, checkpoints, learning curve."""

    def __init__(self, directory: Path, config: DistillConfig, choices: dict[str, str]) -> None:
        self.directory = directory
        self.config = config
        torch.manual_seed(config.seed)
        self.model = build_student(config)
        self.optimizer = torch.optim.Adam(
            self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
        self.state = RunState()
        self.choices = choices

    @classmethod
    def create(cls, directory: Path, config: DistillConfig) -> Run:
        if (directory / "last.pt").exists():
            raise SystemExit(f"{directory} already holds a run: continue it with --resume")
        directory.mkdir(parents=True, exist_ok=True)
        choices = dict(config.choices) or dict(read_choice(Path(config.cache))["choices"])
        (directory / "config.json").write_text(
            json.dumps({**dataclasses.asdict(config), "choices": choices}, indent=2) + "\n"
        )
        run = cls(directory, config, choices)
        if config.init:
            untrained = warm_start(run.model, Path(config.init), config.init_taxonomy)
            log.info(
                "started from %s; %d of %d tags' rows untrained",
                config.init,
                len(untrained),
                len(VOCABULARY),
            )
        return run

    @classmethod
    def resume(cls, directory: Path) -> Run:
        path = directory / "last.pt"
        if not path.is_file():
            raise SystemExit(f"{path} not found: nothing to resume")
        saved = torch.load(path, weights_only=False)
        run = cls(directory, DistillConfig(**saved["config"]), dict(saved["choices"]))
        run.model.load_state_dict(saved["model"])
        run.optimizer.load_state_dict(saved["optimizer"])
        run.state = RunState(**saved["state"])
        return run

    def save(self) -> None:
        partial = self.directory / "last.pt.partial"
        torch.save(
            {
                "config": dataclasses.asdict(self.config),
                "choices": self.choices,
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "state": dataclasses.asdict(self.state),
            },
            partial,
        )
        partial.replace(self.directory / "last.pt")

    def _lr(self) -> float:
        warm = min(1.0, (self.state.global_step + 1) / max(1, self.config.warmup_steps))
        return self.config.lr * self.state.lr_scale * warm

    def _valid(self) -> EvalSet:
        cache = Path(self.config.cache)
        if not self.state.valid_sources:
            tracks = load_tracks(cache, "valid", self.choices)
            if not tracks:
                raise SystemExit(f"no labelled validation tracks in {cache}: run label-patches")
            self.state.valid_sources = [t.source_id for t in tracks]
            return EvalSet(tracks)
        return EvalSet(load_tracks(cache, "valid", self.choices, self.state.valid_sources))

    def train(self, max_seconds: float | None = None, wait_for_data: bool = False) -> None:
        """Train epoch after epoch until patience runs out, `max_epochs`, or `max_seconds`;
        with `wait_for_data`, wait for a first labelled training track instead of failing."""
        torch.set_num_threads(self.config.threads)
        valid = self._valid()
        cache = Path(self.config.cache)
        started = time.monotonic()
        if self.config.init and self.state.global_step == 0 and self.state.best == -math.inf:
            self._record_start(valid)
        while not self.state.done:
            if self.state.step_in_epoch == 0:
                tracks = load_tracks(cache, "train", self.choices)
                if not tracks and wait_for_data:
                    log.info("no training track has the chosen teachers' scores yet: waiting")
                    time.sleep(300)
                    continue
                if not tracks:
                    raise SystemExit(f"no labelled training tracks in {cache}: run label-patches")
                self.state.epoch_sources = [t.source_id for t in tracks]
            else:
                tracks = load_tracks(cache, "train", self.choices, self.state.epoch_sources)
            if not self._train_epoch(tracks, started, max_seconds):
                return  # out of time: last.pt holds where it stopped
            self._end_epoch(tracks, valid)

    def _train_epoch(self, tracks: list[Track], started: float, max_seconds: float | None) -> bool:
        config, state = self.config, self.state
        plan = plan_epoch(tracks, config.seed * 1000 + state.epoch, config.crops_per_window)
        self.model.train()
        tick = time.monotonic()
        for batch in batches(
            tracks, plan, config.batch_size, config.render_weight, state.step_in_epoch
        ):
            for group in self.optimizer.param_groups:
                group["lr"] = self._lr()
            with _autocast(config):
                logits = self.model.forward_log_mel(batch.log_mel)
            losses = F.binary_cross_entropy_with_logits(
                logits.float(), batch.targets, reduction="none"
            ).mean(dim=1)
            loss = (losses * batch.weights).sum() / len(losses)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            self.optimizer.step()
            state.step_in_epoch += 1
            state.global_step += 1
            state.epoch_loss_sum += float(loss.detach())
            if state.step_in_epoch % config.checkpoint_every == 0:
                state.epoch_seconds += time.monotonic() - tick
                tick = time.monotonic()
                self.save()
                log.info(
                    "epoch %d step %d/%d loss %.4f",
                    state.epoch + 1,
                    state.step_in_epoch,
                    math.ceil(len(plan) / config.batch_size),
                    state.epoch_loss_sum / state.step_in_epoch,
                )
                if max_seconds is not None and time.monotonic() - started > max_seconds:
                    return False
        state.epoch_seconds += time.monotonic() - tick
        return True

    def _record_start(self, valid: EvalSet) -> None:
        """A warm start's validation, as epoch 0 of the curve and the first best: the run then
        never exports anything worse than where it started."""
        result = validate(self.model, valid, self.config)
        self.state.best = selection_measure(result, self.config.selection)
        torch.save(self.model.state_dict(), self.directory / "best.pt")
        self._write_row(
            {
                "epoch": 0,
                "train_tracks": 0,
                "train_hours": 0.0,
                "crops": 0,
                "train_loss": "",
                "valid_bce": round(result["bce"], 5),
                "valid_agreement": _rounded(result["agreement"]),
                "valid_mtt_track": _rounded(result["mtt_track"]),
                "valid_msd_track": _rounded(result["msd_track"]),
                "lr": "",
                "train_seconds": 0,
                "crops_per_second": "",
                "best": 1,
            }
        )
        self.save()

    def _write_row(self, row: dict[str, Any]) -> None:
        curve = self.directory / "epochs.csv"
        new = not curve.exists()
        with curve.open("a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=CURVE_FIELDS)
            if new:
                writer.writeheader()
            writer.writerow(row)
        log.info("epoch %d: %s", row["epoch"], row)

    def _end_epoch(self, tracks: list[Track], valid: EvalSet) -> None:
        config, state = self.config, self.state
        steps = max(1, state.step_in_epoch)
        crops = len(plan_epoch(tracks, config.seed * 1000 + state.epoch, config.crops_per_window))
        result = validate(self.model, valid, config)
        state.epoch += 1
        # A run's validation tracks never change, so neither does what the measure falls back to.
        measure = selection_measure(result, config.selection)
        improved = measure > state.best + config.min_delta
        if improved:
            state.best, state.best_epoch, state.bad_epochs = measure, state.epoch, 0
            torch.save(self.model.state_dict(), self.directory / "best.pt")
        elif len(tracks) <= state.last_epoch_tracks:
            state.bad_epochs += 1
            if state.bad_epochs % config.lr_patience == 0:
                state.lr_scale /= 2
        # else: the training set grew since the last epoch (labelling still running): an epoch
        # without improvement then says nothing about the run, so patience waits.
        state.last_epoch_tracks = len(tracks)
        frames = sum(t.mel.shape[0] for t in tracks)
        row = {
            "epoch": state.epoch,
            "train_tracks": len(tracks),
            "train_hours": round(frames * MEL_HOP / SAMPLE_RATE / 3600, 3),
            "crops": crops,
            "train_loss": round(state.epoch_loss_sum / steps, 5),
            "valid_bce": round(result["bce"], 5),
            "valid_agreement": _rounded(result["agreement"]),
            "valid_mtt_track": _rounded(result["mtt_track"]),
            "valid_msd_track": _rounded(result["msd_track"]),
            "lr": f"{self._lr():.2e}",
            "train_seconds": round(state.epoch_seconds),
            "crops_per_second": round(crops / max(state.epoch_seconds, 1e-9), 2),
            "best": int(improved),
        }
        self._write_row(row)
        state.step_in_epoch, state.epoch_loss_sum, state.epoch_seconds = 0, 0.0, 0.0
        state.done = state.bad_epochs >= config.patience or state.epoch >= config.max_epochs
        self.save()
        if state.done:
            self.export()

    def export(self) -> Path:
        """The best epoch, thresholds calibrated on validation -> `model.safetensors`."""
        if not (self.directory / "best.pt").is_file():
            raise SystemExit(f"{self.directory}: no finished epoch yet, nothing to export")
        torch.set_num_threads(self.config.threads)
        self.model.load_state_dict(torch.load(self.directory / "best.pt", weights_only=True))
        # Every validation track labelled by now (the run may have started before the renders
        # were): thresholds need as many positives, voices and instruments included, as exist.
        valid = EvalSet(load_tracks(Path(self.config.cache), "valid", self.choices))
        result = validate(self.model, valid, self.config)
        thresholds, uncalibrated = calibrate_thresholds(
            valid.agreement_labels(),
            result["scores"],
            default=TEACHER_POSITIVE,
            min_positives=CALIBRATION_MIN_POSITIVES,
        )
        provenance = {
            "training_data": {
                "kind": "v3 distillation cache (every patch of every track)",
                "cache": self.config.cache,
                "teachers": {t: choice_label(t, c) for t, c in self.choices.items()},
                "threshold": TEACHER_POSITIVE,
                "licence": LICENCE,
            },
            "recipe": {**dataclasses.asdict(self.config), "version": "v3"},
            "complete": self.state.done,
            "best_epoch": self.state.best_epoch,
            "epochs_trained": self.state.epoch,
            "metrics": {
                "valid_agreement_roc_auc": result["agreement"],
                "valid_mtt_track_agreement": result["mtt_track"],
                "valid_msd_track_agreement": result["msd_track"],
            },
            "thresholds": "per tag, the validation threshold with the highest F1 against "
            f"teacher >= {TEACHER_POSITIVE} or ground truth",
            "uncalibrated_tags": [VOCABULARY[k].id for k in uncalibrated],
            "licence": LICENCE,
        }
        self.model.eval()
        path = save_checkpoint(
            self.directory / "model.safetensors",
            self.model,
            preset=self.config.preset,
            tags=VOCABULARY,
            thresholds=np.clip(thresholds, 0.0, 1.0).tolist(),
            provenance=provenance,
        )
        log.info("exported %s (best epoch %d)", path, self.state.best_epoch)
        return path


def _rounded(value: float | None) -> float | str:
    return "" if value is None else round(float(value), 5)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    start = parser.add_mutually_exclusive_group(required=True)
    start.add_argument("--config", type=Path, help="a new run from this TOML config")
    start.add_argument("--resume", type=Path, help="continue the run in this directory")
    parser.add_argument("--out", type=Path, help="the new run's directory (with --config)")
    parser.add_argument("--export", action="store_true", help="export the best epoch and stop")
    parser.add_argument(
        "--max-minutes", type=float, default=None, help="stop (resumably) after this long"
    )
    parser.add_argument(
        "--wait-for-data",
        action="store_true",
        help="wait for labelled training tracks instead of failing (labelling still running)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    torch.set_flush_denormal(True)
    if args.config is not None:
        if args.out is None:
            parser.error("--config needs --out")
        run = Run.create(args.out, DistillConfig.from_toml(args.config))
    else:
        run = Run.resume(args.resume)
    if args.export:
        run.export()
        return 0
    run.train(None if args.max_minutes is None else args.max_minutes * 60, args.wait_for_data)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
