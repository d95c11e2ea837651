"""The default model's measurements, as plain data (the report renders them, and keeps them).

Every figure comes with the per-tag values it averages, so each number can be checked:
- agreement with each vocabulary's teacher on the held-out packages, window level and track
  level (a track's score is the mean over its windows);
- ground truth on held-out renders and recorded voices, per group of tags, for the student and
  for every teacher on the same windows;
- speed of the compared models;
- threshold stability: the validation F1-optimal threshold of every calibrated tag, bootstrapped.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from model.base import TaggingModel
from model.tags import Tag
from training.distill.choose import truth_auc
from training.distill.data import MIN_POSITIVES, TEACHER_POSITIVE, Split
from training.distill.teachers import MEAN, TAG_IDS, TAXONOMIES, VOCABULARY, teachers_of
from training.metrics import calibrate_thresholds, tagging_metrics

MIN_TRACK_POSITIVES = 5  # track-level agreement averages over tags with this many positive tracks
BOOTSTRAP_ROUNDS = 200


def taxonomy_columns(taxonomy: str) -> slice:
    start = TAXONOMIES.index(taxonomy) * 50
    return slice(start, start + 50)


def _macro(
    labels: np.ndarray, scores: np.ndarray, ids: Sequence[str], minimum: int
) -> dict[str, Any]:
    """Macro ROC-AUC over the tags with at least `minimum` positives, and each tag's AUC."""
    keep = (labels > 0).sum(axis=0) >= minimum
    names = [tag for tag, kept in zip(ids, keep, strict=True) if kept]
    result = tagging_metrics(labels[:, keep], scores[:, keep], names)
    per_tag = {t.name: round(float(t.roc_auc), 4) for t in result.per_tag if t.roc_auc is not None}
    return {"macro_roc_auc": result.roc_auc, "tags": len(per_tag), "per_tag": per_tag}


def track_means(values: np.ndarray, source_ids: np.ndarray) -> np.ndarray:
    """(tracks, C) mean of each source's window rows, in sorted source order."""
    sources, owner = np.unique(source_ids, return_inverse=True)
    sums = np.zeros((len(sources), values.shape[1]))
    np.add.at(sums, owner, values)
    return sums / np.bincount(owner)[:, None]


def agreement(split: Split, scores: np.ndarray, taxonomy: str) -> dict[str, Any]:
    """Agreement of `scores` (N, 50) with the chosen teacher of `taxonomy` on real music."""
    music = split.kinds == "music"
    teacher = split.teacher[music][:, taxonomy_columns(taxonomy)]
    ids = TAG_IDS[taxonomy_columns(taxonomy)]
    window_labels = (teacher >= TEACHER_POSITIVE).astype(np.int8)
    tracks = split.source_ids[music]
    track_labels = (track_means(teacher, tracks) >= TEACHER_POSITIVE).astype(np.int8)
    return {
        "window": _macro(window_labels, scores[music], ids, MIN_POSITIVES),
        "track": _macro(track_labels, track_means(scores[music], tracks), ids, MIN_TRACK_POSITIVES),
        "windows": int(music.sum()),
        "tracks": len(np.unique(tracks)),
    }


def truth_groups(tags: Sequence[Tag] = VOCABULARY) -> dict[str, list[str]]:
    """Tag ids by ground-truth group: MTT instruments (drums included), MTT voice tags, MSD
    tags, and the rest (tempo, beat)."""
    groups: dict[str, list[str]] = {"instruments": [], "voice": [], "msd": [], "other": []}
    for tag in tags:
        if tag.taxonomy == "msd":
            groups["msd"].append(tag.id)
        elif tag.category == "instrument":
            groups["instruments"].append(tag.id)
        elif tag.category == "vocal":
            groups["voice"].append(tag.id)
        else:
            groups["other"].append(tag.id)
    return groups


def ground_truth(split: Split, scores: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Per group, each model's macro ROC-AUC on the windows whose truth is known.

    `scores` maps a model to (N, 100) scores; a model with no score for a group's tags (a
    teacher of the other vocabulary, v1 for MSD) has NaN columns there and is left out of it.
    """
    result: dict[str, Any] = {}
    for group, ids in truth_groups().items():
        columns = [TAG_IDS.index(tag) for tag in ids]
        per_model = {}
        for model, values in scores.items():
            block = values[:, columns]
            if np.isnan(block).all():
                continue
            per_model[model] = truth_auc(split.labels[:, columns], block, ids)
        result[group] = per_model
    return result


def teacher_scores(split: Split) -> dict[str, np.ndarray]:
    """(N, 100) scores of each teacher and each vocabulary's mean, NaN outside its vocabulary."""
    out: dict[str, np.ndarray] = {}
    for taxonomy in TAXONOMIES:
        members = teachers_of(taxonomy)
        candidates = {t.published_as: split.teachers[t.name] for t in members}
        candidates[f"{taxonomy.upper()} {MEAN}"] = np.mean(list(candidates.values()), axis=0)
        for name, values in candidates.items():
            full = np.full((len(split), len(TAG_IDS)), np.nan, dtype=np.float32)
            full[:, taxonomy_columns(taxonomy)] = values
            out[name] = full
    return out


def windows_per_second(model: TaggingModel, batch_size: int = 32, repeats: int = 5) -> float:
    batch = torch.randn(batch_size, model.audio.window_samples) * 0.1
    with torch.inference_mode():
        model(batch)
        started = time.perf_counter()
        for _ in range(repeats):
            model(batch)
    return batch_size * repeats / (time.perf_counter() - started)


def threshold_stability(
    labels: np.ndarray,
    scores: np.ndarray,
    thresholds: Sequence[float],
    ids: Sequence[str],
    min_positives: int,
    seed: int = 0,
) -> dict[str, Any]:
    """The bootstrap spread of the F1-optimal threshold of every tag calibrated on validation.

    `labels` and `scores` are the validation windows the checkpoint was calibrated on;
    each round recalibrates on a resample of the windows (with replacement).
    """
    rng = np.random.default_rng(seed)
    calibrated = [k for k in range(labels.shape[1]) if (labels[:, k] > 0).sum() >= min_positives]
    rounds = []
    for _ in range(BOOTSTRAP_ROUNDS):
        rows = rng.integers(0, len(labels), len(labels))
        values, _ = calibrate_thresholds(labels[rows][:, calibrated], scores[rows][:, calibrated])
        rounds.append(values)
    spread = np.array(rounds)
    return {
        "rounds": BOOTSTRAP_ROUNDS,
        "per_tag": {
            ids[k]: {
                "threshold": round(float(thresholds[k]), 4),
                "positives": int((labels[:, k] > 0).sum()),
                "p05": round(float(np.percentile(spread[:, j], 5)), 4),
                "p95": round(float(np.percentile(spread[:, j], 95)), 4),
            }
            for j, k in enumerate(calibrated)
        },
    }
