"""Final evaluation of a run's best model and export in the service's checkpoint format.

Thresholds are calibrated on the validation set (per tag, the one that maximises F1), never on
the test set; validation and test metrics go into the checkpoint's provenance.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from model.base import TaggingModel
from model.checkpoint import save_checkpoint
from model.runtime import resolve_precision
from training.config import TrainConfig
from training.data.store import PreparedDataset
from training.distributed import DistEnv
from training.evaluate import evaluate_split
from training.metrics import Metrics, calibrate_thresholds, format_summary, write_report
from training.run import write_json

log = logging.getLogger(__name__)

PROTOCOL = (
    "Won et al.: 16 evenly spaced crops per clip, mean of sigmoid scores, macro ROC-AUC and "
    "macro PR-AUC (scikit-learn) over tags with positive and negative clips"
)


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
    dtype = resolve_precision(config.precision, env.device, cpu_autocast=False)
    options: dict[str, Any] = {
        "n_crops": config.eval_crops,
        "eval_batch": config.eval_batch,
        "dtype": dtype,
        "num_workers": config.num_workers,
        "progress": config.progress and env.is_main,
    }
    valid, valid_predictions = evaluate_split(model, data, "valid", env, **options)
    test: Metrics | None = None
    if len(data.split_indices("test")):
        test, _ = evaluate_split(model, data, "test", env, **options)
    else:
        log.warning("the test split is empty: no test metrics")
    thresholds, uncalibrated = calibrate_thresholds(
        valid_predictions.labels, valid_predictions.scores
    )
    summary: dict[str, Any] = {
        "complete": True,
        "preset": config.preset,
        "parameters": model.num_parameters(),
        "best_epoch": best_epoch,
        "selected_by": config.select_by,
        "valid": valid.summary(),
        "test": test.summary() if test is not None else None,
        "thresholds": dict(zip(data.tag_names, thresholds, strict=True)),
        "uncalibrated_tags": [data.tag_names[i] for i in uncalibrated],
        "protocol": PROTOCOL,
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
) -> Path:
    """Write the service checkpoint with calibrated thresholds and metrics in its provenance."""
    source = data.info.get("source", {})
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
            "loss": "binary cross-entropy with logits",
            "selected_by": f"validation {config.select_by}",
            "seed": config.seed,
        },
        "best_epoch": best_epoch,
        "metrics": {
            split: (value.summary() if value is not None else None)
            for split, value in metrics.items()
        },
        "evaluation": PROTOCOL,
        "thresholds": "per tag, the validation-set threshold with the highest F1",
        "uncalibrated_tags": uncalibrated,
    }
    if "licence" in source:
        provenance["licence"] = source["licence"]
    model.eval()
    return save_checkpoint(
        path,
        model,
        preset=config.preset,
        tags=data.tags,
        thresholds=np.clip(thresholds, 0.0, 1.0).tolist(),
        provenance=provenance,
    )
