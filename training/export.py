"""Final evaluation of a run's best model and export in the service's checkpoint format.

Thresholds are calibrated on the validation set (per tag, the one that maximises F1), never on
the test set; validation and test metrics go into the checkpoint's provenance. A distilled run
(`targets = "soft"`) is calibrated against the dataset's 0/1 labels, which are then the teacher's
score >= 0.3 or the ground truth, and its provenance names the teacher and the agreement.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from model.base import TaggingModel
from model.checkpoint import save_checkpoint
from training.config import TrainConfig
from training.data.store import PreparedDataset
from training.distributed import DistEnv
from training.evaluate import evaluate_split
from training.metrics import (
    Metrics,
    calibrate_thresholds,
    format_summary,
    frequent_tag_auc,
    write_report,
)
from training.run import autocast_dtype, write_json

# Fewer positive validation windows than this and a distilled model's tag is not calibrated.
CALIBRATION_MIN_POSITIVES = 20

log = logging.getLogger(__name__)

PROTOCOL = (
    "Won et al.: 16 evenly spaced crops per clip, mean of sigmoid scores, macro ROC-AUC and "
    "macro PR-AUC (scikit-learn) over tags with positive and negative clips"
)
ONE_WINDOW_PROTOCOL = (
    "one crop per clip of one window, sigmoid scores, macro ROC-AUC and macro PR-AUC "
    "(scikit-learn) over tags with positive and negative clips"
)


def protocol(data: PreparedDataset, window: int) -> str:
    """How the metrics were measured (clips no longer than a window get a single crop)."""
    return ONE_WINDOW_PROTOCOL if int(data.lengths.max(initial=0)) <= window else PROTOCOL


def finalize(
    model: TaggingModel,
    config: TrainConfig,
    data: PreparedDataset,
    env: DistEnv,
    reports: Path,
    *,
    best_epoch: int,
    export_to: Path | None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Evaluate `model` on valid and test, calibrate thresholds, write reports, export.

    Every rank takes part in the evaluation; only rank 0 writes files: `metrics.json` and the
    per-split reports go to `reports` (normally the run directory). Returns `metrics.json`.
    """
    model.to(env.device)
    dtype = autocast_dtype(config, env.device)
    soft = config.targets == "soft"
    options: dict[str, Any] = {
        "n_crops": config.eval_crops,
        "eval_batch": config.eval_batch,
        "dtype": dtype,
        "num_workers": config.num_workers,
        "progress": config.progress and env.is_main,
        "soft": soft,
    }
    valid, valid_predictions = evaluate_split(model, data, "valid", env, **options)
    test: Metrics | None = None
    if len(data.split_indices("test")):
        test, _ = evaluate_split(model, data, "test", env, **options)
    else:
        log.warning("the test split is empty: no test metrics")
    # A distilled model's labels are "teacher >= threshold", so a tag too rare in validation
    # to calibrate keeps that threshold; trained on real labels, it keeps 0.5.
    thresholds, uncalibrated = calibrate_thresholds(
        valid_predictions.labels,
        valid_predictions.scores,
        default=float(data.info.get("source", {}).get("threshold", 0.5)) if soft else 0.5,
        min_positives=CALIBRATION_MIN_POSITIVES if soft else 1,
    )
    agreement: float | None = None
    if soft or config.select_by == "agreement":
        agreement, _ = frequent_tag_auc(
            valid_predictions.labels, valid_predictions.scores, data.tag_names
        )
    summary: dict[str, Any] = {
        "complete": True,
        "preset": config.preset,
        "parameters": model.num_parameters(),
        "best_epoch": best_epoch,
        "selected_by": config.select_by,
        "targets": config.targets,
        "valid_agreement_roc_auc": agreement,
        "valid": valid.summary(),
        "test": test.summary() if test is not None else None,
        "thresholds": dict(zip(data.tag_names, thresholds, strict=True)),
        "uncalibrated_tags": [data.tag_names[i] for i in uncalibrated],
        "protocol": protocol(data, model.audio.window_samples),
        **(extra or {}),
    }
    if env.is_main:
        log.info(format_summary(valid, "valid"))
        write_report(reports, "valid", valid)
        if test is not None:
            log.info(format_summary(test, "test"))
            write_report(reports, "test", test)
        if export_to is not None:
            export_checkpoint(
                model,
                config,
                data,
                export_to,
                thresholds=thresholds,
                metrics={"valid": valid, "test": test},
                uncalibrated=[data.tag_names[i] for i in uncalibrated],
                best_epoch=best_epoch,
                world_size=env.world_size,
                agreement=agreement,
            )
            summary["exported"] = str(export_to)
            log.info("exported %s", export_to)
        write_json(reports / "metrics.json", summary)
    return summary


def export_checkpoint(
    model: TaggingModel,
    config: TrainConfig,
    data: PreparedDataset,
    path: Path,
    *,
    thresholds: list[float],
    metrics: dict[str, Metrics | None],
    uncalibrated: list[str],
    best_epoch: int,
    world_size: int,
    agreement: float | None = None,
) -> Path:
    """Write the service checkpoint with calibrated thresholds and metrics in its provenance.

    Args:
        agreement: Validation agreement with the teacher (`frequent_tag_auc`), if measured.
    """
    source = data.info.get("source", {})
    soft = config.targets == "soft"
    valid = metrics.get("valid")
    # Read by `training.distill.report` (the default model's report) under these names.
    distillation: dict[str, Any] = (
        {
            "valid_agreement_roc_auc": agreement,
            "valid_soft_bce": valid.loss if valid is not None else None,
        }
        if soft
        else {}
    )
    calibrated_against = (
        f"teacher >= {source.get('threshold')} or ground truth" if soft else "the labels"
    )
    provenance = {
        "training_data": {
            **source,
            "clips": data.info.get("clips"),
            "skipped_files": len(data.info.get("skipped", [])),
        },
        "recipe": {
            "schedule": config.schedule,
            "epochs": config.total_epochs,
            "stages": [vars(stage) for stage in config.stages]
            if config.schedule == "won"
            else None,
            "batch_size": config.batch_size,
            "processes": world_size,
            "lr": config.lr,
            "weight_decay": config.weight_decay,
            "warmup": config.warmup,
            "targets": config.targets,
            "loss": "binary cross-entropy with logits"
            + (
                " on soft targets (teacher probabilities, ground truth where known)" if soft else ""
            ),
            "precision": config.precision,
            "cpu_autocast": config.cpu_autocast,
            "selected_by": f"validation {config.select_by}",
            "seed": config.seed,
        },
        "best_epoch": best_epoch,
        "metrics": {
            **{
                split: (value.summary() if value is not None else None)
                for split, value in metrics.items()
            },
            **distillation,
        },
        "evaluation": protocol(data, model.audio.window_samples),
        "thresholds": "per tag, the validation-set threshold with the highest F1 against "
        f"{calibrated_against}",
        "uncalibrated_tags": uncalibrated,
    }
    if "licence" in source:
        provenance["licence"] = source["licence"]
    for key in ("teacher", "teachers"):
        if key in source:
            provenance[key] = source[key]
    model.eval()
    return save_checkpoint(
        path,
        model,
        preset=config.preset,
        tags=data.tags,
        thresholds=np.clip(thresholds, 0.0, 1.0).tolist(),
        provenance=provenance,
    )
