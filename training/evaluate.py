"""Evaluation with Won et al.'s protocol: 16 evenly spaced crops per clip, mean of sigmoids.

Clips no longer than one window (the distillation corpus) are scored with one crop whatever
`n_crops` says: their evenly spaced crops would all start at 0, the same window n times.
Metrics are always against the 0/1 labels; with `soft` the loss is against the soft targets
(what the model was trained on).

Under `torchrun` every rank scores its share of the clips and the scores are gathered, so all
ranks end up with the same full set of predictions and compute the same metrics.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm import tqdm

from model.base import TaggingModel
from training.data.dataset import EvaluationClips
from training.data.store import DatasetError, PreparedDataset
from training.distributed import DistEnv, gather_objects
from training.metrics import Metrics, tagging_metrics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Predictions:
    """Clip-level scores of one set of clips.

    Attributes:
        indices: (N,) clip indices into the dataset, in the order requested.
        labels: (N, C) 0/1 labels.
        scores: (N, C) mean sigmoid over the crops of each clip.
        loss: Mean binary cross-entropy over all crops and tags (against the soft targets
            when scored with `soft`).
    """

    indices: np.ndarray
    labels: np.ndarray
    scores: np.ndarray
    loss: float


@torch.inference_mode()
def predict_clips(
    model: TaggingModel,
    data: PreparedDataset,
    indices: np.ndarray,
    env: DistEnv,
    *,
    n_crops: int = 16,
    eval_batch: int = 64,
    dtype: torch.dtype | None = None,
    num_workers: int = 0,
    progress: bool = False,
    desc: str = "evaluating",
    soft: bool = False,
) -> Predictions:
    """Score `indices` with `n_crops` crops each; the model's mode is restored afterwards.

    Args:
        model: The bare network (not the DDP wrapper), already on `env.device`.
        eval_batch: Windows per forward pass (rounded down to whole clips, at least one clip).
    """
    indices = np.asarray(indices, dtype=np.int64)
    shard = indices[env.rank :: env.world_size]
    window = model.audio.window_samples
    if len(indices) and int(data.lengths[indices].max()) <= window:
        n_crops = 1
    dataset = EvaluationClips(data, shard, window, n_crops, soft=soft)
    loader = DataLoader(
        dataset,
        batch_size=max(1, eval_batch // n_crops),
        num_workers=num_workers,
        pin_memory=env.device.type == "cuda",
    )
    was_training = model.training
    model.eval()
    clips: list[np.ndarray] = []
    scores: list[np.ndarray] = []
    loss_sum = 0.0
    for crops, labels, clip in tqdm(loader, desc=desc, leave=False, disable=not progress):
        batch, crops_per_clip, samples = crops.shape
        windows = crops.reshape(batch * crops_per_clip, samples).to(env.device, non_blocking=True)
        with torch.autocast(env.device.type, dtype=dtype, enabled=dtype is not None):
            logits = model(windows)
        logits = logits.float().reshape(batch, crops_per_clip, -1)
        targets = labels.to(env.device)[:, None, :].expand_as(logits)
        loss_sum += float(F.binary_cross_entropy_with_logits(logits, targets, reduction="sum"))
        scores.append(torch.sigmoid(logits).mean(dim=1).cpu().numpy())
        clips.append(clip.numpy())
    model.train(was_training)
    n_classes = data.n_classes
    local = (
        np.concatenate(clips) if clips else np.zeros(0, dtype=np.int64),
        np.concatenate(scores) if scores else np.zeros((0, n_classes), dtype=np.float32),
        loss_sum,
    )
    gathered = gather_objects(env, local)
    all_clips = np.concatenate([g[0] for g in gathered])
    all_scores = np.concatenate([g[1] for g in gathered])
    total_loss = sum(g[2] for g in gathered)
    position = {int(clip): row for row, clip in enumerate(all_clips)}
    order = np.array([position[int(i)] for i in indices], dtype=np.int64)
    denominator = max(len(indices) * n_crops * n_classes, 1)
    return Predictions(
        indices=indices,
        labels=data.labels[indices],
        scores=all_scores[order] if len(order) else all_scores,
        loss=total_loss / denominator,
    )


def evaluate_split(
    model: TaggingModel,
    data: PreparedDataset,
    split: str,
    env: DistEnv,
    *,
    n_crops: int = 16,
    eval_batch: int = 64,
    dtype: torch.dtype | None = None,
    num_workers: int = 0,
    progress: bool = False,
    soft: bool = False,
) -> tuple[Metrics, Predictions]:
    """Metrics and predictions of `model` on one split of `data`.

    Raises:
        DatasetError: the split is empty, or the model's outputs do not match the vocabulary.
    """
    if model.n_classes != data.n_classes:
        raise DatasetError(
            f"the model has {model.n_classes} outputs but the dataset has {data.n_classes} tags"
        )
    indices = data.split_indices(split)
    if len(indices) == 0:
        raise DatasetError(f"the {split} split of {data.root} is empty")
    predictions = predict_clips(
        model,
        data,
        indices,
        env,
        n_crops=n_crops,
        eval_batch=eval_batch,
        dtype=dtype,
        num_workers=num_workers,
        progress=progress,
        desc=f"{split} ({len(indices)} clips)",
        soft=soft,
    )
    metrics = tagging_metrics(
        predictions.labels, predictions.scores, data.tag_names, loss=predictions.loss
    )
    return metrics, predictions
