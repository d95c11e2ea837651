"""The metrics, the threshold rule, the grouped folds and the fast decoder that teaching uses."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

from app.teach.features import FeatureCache, gather
from app.teach.fit import (
    FitConfig,
    Windows,
    average_precision,
    best_f1_threshold,
    fit_probe,
    fit_query,
    probe_logits,
    query_logits,
    roc_auc,
)
from app.teach.teach import grouped_folds
from model.audio.decode import decode_audio
from model.checkpoint import Checkpoint, load_checkpoint
from model.q2l import Query2Label
from model.tags import Tag
from model.tagset import BaseBinding, TagSet, TaughtTag, extend_checkpoint
from tests.app.teach.conftest import V1


@pytest.mark.parametrize("seed", range(5))
def test_metrics_match_scikit_learn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 60)
    labels[:2] = [0, 1]
    scores = rng.integers(0, 8, 60) / 8  # many ties
    assert roc_auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert average_precision(labels, scores) == pytest.approx(
        average_precision_score(labels, scores), abs=1e-12
    )


def test_roc_auc_of_one_class_is_nan() -> None:
    assert np.isnan(roc_auc([1, 1, 1], [0.1, 0.2, 0.3]))


def test_best_f1_threshold() -> None:
    # Keeping the top four gives 3 true positives of 3, 4 predicted: F1 = 6/7, the best.
    threshold, f1 = best_f1_threshold([1, 1, 0, 1, 0], [0.9, 0.8, 0.7, 0.6, 0.1])
    assert threshold == pytest.approx(0.35)
    assert f1 == pytest.approx(6 / 7)


@pytest.mark.parametrize("seed", range(20))
def test_grouped_folds_never_split_a_group(seed: int) -> None:
    rng = np.random.default_rng(seed)
    groups = [f"album{g}" for g in rng.integers(0, 15, 80)]
    positive_albums = {f"album{g}" for g in range(5)}
    labels = np.array([int(g in positive_albums) for g in groups])
    folds = grouped_folds(groups, labels, folds=4, seed=seed)
    for group in set(groups):
        assert len({folds[i] for i, g in enumerate(groups) if g == group}) == 1
    for fold in range(4):  # stratified: every fold holds positives and negatives
        held = labels[folds == fold]
        assert 0 < held.sum() < len(held)


@dataclass(frozen=True)
class Cached:
    checkpoint: Checkpoint
    cache: FeatureCache
    paths: list[str]
    windows: Windows


@pytest.fixture(scope="module")
def cached(examples: Path, teach_cache: Path) -> Cached:
    checkpoint = load_checkpoint(V1)
    for parameter in checkpoint.model.parameters():
        parameter.requires_grad_(False)
    cache = FeatureCache(checkpoint, teach_cache)
    paths = sorted(str(p) for p in examples.rglob("*.flac"))  # orchestral/ sorts first
    windows, _, failures = gather(cache, paths)
    assert not failures
    return Cached(checkpoint, cache, paths, windows)


def test_trained_heads_score_in_the_served_model_as_in_training(cached: Cached) -> None:
    """The trainer's decoder (keys and values precomputed once) and its probe give the logits
    that the served `TaggedModel` computes from the audio; the query separates the styles."""
    model = cached.checkpoint.model
    assert isinstance(model, Query2Label)
    windows = cached.windows
    labels = (windows.track >= 6).float()  # techno/ (positives) sorts after orchestral/
    config = FitConfig(query_steps=25)
    query = fit_query(model, windows, labels, config)
    probe = fit_probe(windows, labels, config)
    trained_query = query_logits(model, windows, query)
    trained_probe = probe_logits(windows, probe)
    assert roc_auc(labels.numpy(), trained_query.numpy()) > 0.95
    assert roc_auc(labels.numpy(), trained_probe.numpy()) > 0.95
    tag_set = TagSet(
        name="t",
        taxonomy="custom",
        base=BaseBinding.of(cached.checkpoint),
        tags=(
            TaughtTag(Tag("q", "other", "q", "custom"), "query", 0.5),
            TaughtTag(Tag("p", "other", "p", "custom"), "probe", 0.5),
        ),
        queries=torch.stack([query.query, query.query]),
        query_rows=torch.stack([query.row, query.row]),
        query_biases=torch.stack([query.bias, query.bias]),
        probe_weights=torch.stack([probe.weight, probe.weight]),
        probe_biases=torch.stack([probe.bias, probe.bias]),
    )
    served = extend_checkpoint(cached.checkpoint, [tag_set]).model
    for track in (0, 7):
        samples = decode_audio(cached.paths[track], sample_rate=16000).samples
        with torch.inference_mode():
            logits = served(cached.cache.windows_of(torch.from_numpy(samples)))
        rows = windows.track == track
        torch.testing.assert_close(logits[:, 50], trained_query[rows], rtol=0, atol=1e-4)
        torch.testing.assert_close(logits[:, 51], trained_probe[rows], rtol=0, atol=1e-4)
