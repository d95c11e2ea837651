"""One training run: the paper's recipe by default, Won et al.'s long schedule on request.

Loop per epoch: random crops -> BCE with logits against the 0/1 labels, or against the
dataset's soft targets with `targets = "soft"` (distillation) -> optimizer step (and one-cycle
step per batch) -> validation with 16 crops per clip (one for clips of one window) -> best
model by `select_by` -> `last.pt` and `log.csv`.
When all epochs are done, the best model is evaluated on valid and test, thresholds are
calibrated on valid and the model is exported (see `training.export`).

Runs unchanged as one process or under `torchrun` (DistributedDataParallel; each process takes
`batch_size` windows per step, so the global batch is `batch_size × processes`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim import SGD, Adam, Optimizer
from torch.optim.lr_scheduler import LRScheduler, OneCycleLR
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from model.base import TaggingModel
from model.config import config_to_dict
from training.config import TrainConfig, stage_index
from training.data.dataset import RandomCrops
from training.data.store import DatasetError, PreparedDataset
from training.distributed import DistEnv, barrier, gather_objects, sum_tensor, sync_buffers
from training.evaluate import evaluate_split
from training.export import finalize
from training.metrics import Metrics, frequent_tag_auc
from training.run import (
    RunDir,
    RunError,
    autocast_dtype,
    build_run_model,
    load_pt,
    save_atomic,
    state_digest,
    write_json,
    write_log,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunResult:
    """What a call to `train` achieved.

    Attributes:
        run_dir: The run directory.
        completed: All epochs done and the final evaluation written.
        epochs_done: Epochs trained so far (including those of earlier, resumed calls).
        history: One dict per epoch (the rows of log.csv).
        final: Content of metrics.json when completed.
    """

    run_dir: Path
    completed: bool
    epochs_done: int
    history: list[dict[str, Any]]
    final: dict[str, Any] | None


def make_optimizer(config: TrainConfig, model: nn.Module, stage: int) -> Optimizer:
    """Adam (L2 weight decay, as the reference code) or, in later Won stages, Nesterov SGD."""
    if config.schedule == "onecycle":
        return Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    spec = config.stages[stage]
    if spec.optimizer == "adam":
        return Adam(model.parameters(), lr=spec.lr, weight_decay=config.weight_decay)
    return SGD(
        model.parameters(),
        lr=spec.lr,
        momentum=config.momentum,
        nesterov=True,
        weight_decay=config.weight_decay,
    )


def make_scheduler(
    config: TrainConfig, optimizer: Optimizer, steps_per_epoch: int
) -> LRScheduler | None:
    """The paper's one-cycle schedule, stepped per batch; PyTorch's other defaults as the code.

    OneCycleLR needs at least one step in each phase: on a tiny dataset the warm-up is
    lengthened to 1.5 steps (and below 3 steps in all, the learning rate stays constant).
    """
    if config.schedule != "onecycle":
        return None
    total = config.epochs * steps_per_epoch
    if total < 3:
        log.warning("only %d optimizer steps: constant learning rate instead of one-cycle", total)
        return None
    warmup = max(config.warmup, 1.5 / total)
    if warmup != config.warmup:
        log.warning("only %d optimizer steps: warm-up lengthened to %.0f %%", total, 100 * warmup)
    return OneCycleLR(optimizer, max_lr=config.lr, total_steps=total, pct_start=warmup)


def _selection_value(config: TrainConfig, metrics: Metrics, agreement: float | None) -> float:
    """Higher is better. Without any evaluable tag, AUCs do not exist: fall back to the loss."""
    assert metrics.loss is not None
    if config.select_by == "agreement" and agreement is not None:
        return agreement
    if config.select_by == "pr_auc" and metrics.pr_auc is not None:
        return metrics.pr_auc
    if config.select_by == "roc_auc" and metrics.roc_auc is not None:
        return metrics.roc_auc
    return -metrics.loss


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: t.detach().cpu().clone() for name, t in model.state_dict().items()}


def _rng_state(env: DistEnv) -> dict[str, Any]:
    state: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if env.device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(env.device)
    return state


def _set_rng_state(env: DistEnv, state: dict[str, Any]) -> None:
    torch.set_rng_state(state["cpu"])
    if env.device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], env.device)


def _train_epoch(
    net: nn.Module,
    loader: DataLoader[tuple[torch.Tensor, torch.Tensor]],
    optimizer: Optimizer,
    scheduler: LRScheduler | None,
    scaler: torch.amp.GradScaler,
    dtype: torch.dtype | None,
    env: DistEnv,
    *,
    progress: bool,
    desc: str,
) -> float:
    """One pass over the training crops; returns the mean loss over all ranks' windows."""
    net.train()
    totals = torch.zeros(2, dtype=torch.float64, device=env.device)  # loss sum, windows
    bar = tqdm(loader, desc=desc, leave=False, disable=not progress, unit="batch")
    for waveforms, labels in bar:
        waveforms = waveforms.to(env.device, non_blocking=True)
        labels = labels.to(env.device, non_blocking=True)
        with torch.autocast(env.device.type, dtype=dtype, enabled=dtype is not None):
            logits = net(waveforms)
        # BCE on logits in float32: the paper's BCELoss on sigmoid outputs, but autocast-safe.
        loss = F.binary_cross_entropy_with_logits(logits.float(), labels)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()  # type: ignore[no-untyped-call]
        scaler.step(optimizer)
        scaler.update()
        if scheduler is not None:
            scheduler.step()
        totals += torch.stack(
            [loss.detach().double() * len(labels), totals.new_tensor(len(labels))]
        )
        if progress:
            bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
    totals = sum_tensor(env, totals)
    return float(totals[0] / totals[1].clamp(min=1))


def _describe(
    config: TrainConfig, model: TaggingModel, data: PreparedDataset, env: DistEnv
) -> None:
    clips = {split: len(data.split_indices(split)) for split in ("train", "valid", "test")}
    log.info(
        "%s (%.2f M parameters, %d-sample windows) on %s × %d; %s; data %s: %s",
        config.preset,
        model.num_parameters() / 1e6,
        model.audio.window_samples,
        env.device,
        env.world_size,
        f"{config.schedule} schedule, {config.total_epochs} epochs, batch {config.batch_size}",
        data.root,
        ", ".join(f"{n} {s}" for s, n in clips.items()),
    )


def train(config: TrainConfig, env: DistEnv, *, resume: bool = False) -> RunResult:
    """Train (or continue) the run `config.out`; see the module docstring.

    Raises:
        RunError: the run directory holds another run (without `resume`) or no run (with it).
        DatasetError: the data does not fit the model (sample rate) or has no training clips.
    """
    run = RunDir(config.out)
    data = PreparedDataset.open(config.data)
    torch.manual_seed(config.seed)  # identical initial weights on every rank
    model = build_run_model(config, data.n_classes)
    if model.audio.sample_rate != data.sample_rate:
        raise DatasetError(
            f"{config.preset} expects {model.audio.sample_rate} Hz audio but {data.root} was "
            f"prepared at {data.sample_rate} Hz"
        )
    state: dict[str, Any] | None = None
    if resume:
        state = load_pt(run.last)
    elif run.last.exists():
        raise RunError(
            f"{run.root} already holds a run: continue it with --resume {run.root} or choose "
            "another --out"
        )
    if env.is_main:
        run.root.mkdir(parents=True, exist_ok=True)
        write_json(
            run.config,
            {
                "train": config.to_dict(),
                "model_config": config_to_dict(model.config),
                "architecture": model.architecture,
                "parameters": model.num_parameters(),
                "processes": env.world_size,
                "dataset": {"root": str(data.root), "clips": data.info["clips"]},
            },
        )
    barrier(env)
    model.to(env.device)
    if env.is_main:
        _describe(config, model, data, env)

    window = model.audio.window_samples
    soft = config.targets == "soft"
    dataset = RandomCrops(data, data.split_indices("train"), window, config.seed, soft=soft)
    sampler: DistributedSampler[tuple[torch.Tensor, torch.Tensor]] = DistributedSampler(
        dataset, num_replicas=env.world_size, rank=env.rank, shuffle=True, seed=config.seed
    )
    loader = DataLoader(
        dataset,
        batch_size=config.batch_size,
        sampler=sampler,
        num_workers=config.num_workers,
        pin_memory=env.device.type == "cuda",
        drop_last=False,
    )
    net: nn.Module = model
    if env.distributed:
        device_ids = [env.device.index] if env.device.type == "cuda" else None
        net = DistributedDataParallel(model, device_ids=device_ids)
    dtype = autocast_dtype(config, env.device)
    scaler = torch.amp.GradScaler(env.device.type, enabled=dtype == torch.float16)

    stage = 0
    start_epoch = 0
    history: list[dict[str, Any]] = []
    best_value: float | None = None
    best_epoch = 0
    best_state: dict[str, torch.Tensor] | None = None
    if state is not None:
        stage = int(state["stage"])
        start_epoch = int(state["epoch"])
        history = list(state["history"])
        best_value = state["best_value"]
        best_epoch = int(state["best_epoch"])
        model.load_state_dict(state["model"])
        best_state = load_pt(run.best)["model"] if run.best.exists() else None
    optimizer = make_optimizer(config, model, stage)
    scheduler = make_scheduler(config, optimizer, len(loader))
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        rng = state["rng"]
        if len(rng) == env.world_size:
            _set_rng_state(env, rng[env.rank])
        else:
            log.warning("resuming with %d processes instead of %d", env.world_size, len(rng))
            torch.manual_seed(config.seed + 1 + env.rank + start_epoch * 1000)
        log.info("resuming %s after epoch %d", run.root, start_epoch)
    else:
        torch.manual_seed(config.seed + 1 + env.rank)  # dropout differs per rank, on purpose

    total = config.total_epochs
    options: dict[str, Any] = {
        "n_crops": config.eval_crops,
        "eval_batch": config.eval_batch,
        "dtype": dtype,
        "num_workers": config.num_workers,
        "progress": config.progress and env.is_main,
        "soft": soft,
    }
    for epoch in range(start_epoch, total):
        if config.schedule == "won":
            wanted = stage_index(config.stages, epoch)
            if wanted != stage:
                optimizer = _switch_stage(config, model, optimizer, stage, wanted, best_state)
                stage = wanted
        sampler.set_epoch(epoch)
        dataset.set_epoch(epoch)
        started = time.perf_counter()
        train_loss = _train_epoch(
            net,
            loader,
            optimizer,
            scheduler,
            scaler,
            dtype,
            env,
            progress=config.progress and env.is_main,
            desc=f"epoch {epoch + 1}/{total}",
        )
        sync_buffers(env, model)
        trained = time.perf_counter()
        metrics, predictions = evaluate_split(model, data, "valid", env, **options)
        finished = time.perf_counter()
        agreement = None
        if config.select_by == "agreement":
            labels, scores = predictions.labels, predictions.scores
            agreement, _ = frequent_tag_auc(labels, scores, data.tag_names)
        value = _selection_value(config, metrics, agreement)
        improved = best_value is None or value > best_value
        if improved:
            best_value, best_epoch, best_state = value, epoch + 1, _cpu_state(model)
        row = {
            "epoch": epoch + 1,
            "stage": stage + 1 if config.schedule == "won" else "",
            "lr": optimizer.param_groups[0]["lr"],
            "train_loss": train_loss,
            "val_loss": metrics.loss,
            "val_roc_auc": metrics.roc_auc,
            "val_pr_auc": metrics.pr_auc,
            "val_agreement": agreement,
            "train_seconds": trained - started,
            "val_seconds": finished - trained,
            "seconds": finished - started,
            "best": int(improved),
        }
        history.append(row)
        rng = gather_objects(env, _rng_state(env))
        if env.is_main:
            if improved:
                save_atomic({"model": best_state, "epoch": epoch + 1, "value": value}, run.best)
            save_atomic(
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict() if scheduler is not None else None,
                    "scaler": scaler.state_dict(),
                    "stage": stage,
                    "epoch": epoch + 1,
                    "history": history,
                    "best_value": best_value,
                    "best_epoch": best_epoch,
                    "rng": rng,
                },
                run.last,
            )
            if config.keep_epoch_checkpoints:
                save_atomic({"model": model.state_dict(), "epoch": epoch + 1}, run.epoch(epoch + 1))
            write_log(run.log, history)
            log.info(
                "epoch %d/%d: train loss %.4f, val loss %.4f, ROC-AUC %s, PR-AUC %s, %s%.1f s%s",
                epoch + 1,
                total,
                train_loss,
                metrics.loss,
                _fmt(metrics.roc_auc),
                _fmt(metrics.pr_auc),
                "" if agreement is None else f"agreement {agreement:.4f}, ",
                finished - started,
                " (best)" if improved else "",
            )
        barrier(env)
        done = epoch + 1
        if config.stop_after_epoch is not None and done >= config.stop_after_epoch and done < total:
            if env.is_main:
                log.info(
                    "stopped after epoch %d of %d; continue with --resume %s", done, total, run.root
                )
            return RunResult(run.root, False, done, history, None)

    digest = state_digest(model)
    run.digest(env.rank).write_text(digest + "\n")
    digests = gather_objects(env, digest)
    if len(set(digests)) != 1:
        log.error("processes ended with different weights: %s", digests)
    if best_state is None:
        raise RunError(f"{run.root}: no epoch was trained, nothing to evaluate")
    model.load_state_dict(best_state)
    seconds = [float(row["seconds"]) for row in history]
    final = finalize(
        model,
        config,
        data,
        env,
        run.root,
        best_epoch=best_epoch,
        export_to=run.model if config.export else None,
        extra={
            "epochs": total,
            "processes": env.world_size,
            "seconds_per_epoch": sum(seconds) / len(seconds),
            "rank_weight_digests": digests,
        },
    )
    barrier(env)
    return RunResult(run.root, True, total, history, final)


def _switch_stage(
    config: TrainConfig,
    model: nn.Module,
    optimizer: Optimizer,
    old: int,
    new: int,
    best_state: dict[str, torch.Tensor] | None,
) -> Optimizer:
    """Won et al.'s stage change: reload the best model, then a new optimizer or a new lr."""
    if best_state is not None:
        model.load_state_dict(best_state)
    spec = config.stages[new]
    log.info("stage %d: %s at lr %g (best model reloaded)", new + 1, spec.optimizer, spec.lr)
    if spec.optimizer != config.stages[old].optimizer:
        return make_optimizer(config, model, new)
    for group in optimizer.param_groups:
        group["lr"] = spec.lr
    return optimizer


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"
