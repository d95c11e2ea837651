"""From examples to a tag set with its measured quality (`tagger teach`, `tagger retrain`).

Per tag: the tracks that say something about it (positives, negatives), grouped by track or by
the examples' group column; grouped, stratified k-fold cross-validation (every window of a
track, every track of a group, on one side of each split); in each fold both scorers
(model.tagset: a new query, a probe on the pooled embedding) trained on the training side and
scored on the held-out side; ROC-AUC and PR-AUC per fold (mean and standard deviation) and on
the pooled out-of-fold scores; the scorer with the higher mean ROC-AUC is shipped (PR-AUC
breaks a tie); the threshold is the best-F1 point of the shipped scorer's out-of-fold scores.
Finally both scorers are trained once more on every example and written to the set.

Refused (`TeachError`, every problem listed): a tag with fewer than two positive tracks, or
without negatives, or whose positives or negatives all sit in one group; files that cannot be
read or decoded. Warned: fewer than `TeachConfig.few_positives` positives, fewer folds than
asked, folds that disagree.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from app.teach.examples import ExampleSet
from app.teach.features import FeatureCache, gather
from app.teach.fit import (
    FitConfig,
    ProbeHead,
    QueryHead,
    Windows,
    average_precision,
    best_f1_threshold,
    fit_probe,
    fit_query,
    probe_logits,
    query_logits,
    roc_auc,
    track_scores,
)
from model.checkpoint import Checkpoint
from model.q2l import Query2Label
from model.tags import Category, Tag
from model.tagset import BaseBinding, Scorer, TagSet, TaughtTag


class TeachError(ValueError):
    """Examples that cannot be taught from; `problems` lists every one."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


@dataclass(frozen=True)
class TeachConfig:
    """How a teaching run splits, trains and judges.

    Attributes:
        folds: Cross-validation folds (fewer when a tag has fewer positive groups).
        seed: Fold assignment and training seed.
        others_are_negatives: A positive of another tag is a negative of this one.
        few_positives: Below this many positive tracks the quality figures are only a preview.
        disagreeing_folds: Warn when the folds' ROC-AUC spans more than this.
        fit: How the scorers are trained.
    """

    folds: int = 5
    seed: int = 0
    others_are_negatives: bool = True
    few_positives: int = 15
    disagreeing_folds: float = 0.25
    fit: FitConfig = field(default_factory=FitConfig)


@dataclass(frozen=True)
class ScorerQuality:
    roc_auc: list[float]  # per fold
    pr_auc: list[float]
    pooled_roc_auc: float
    pooled_pr_auc: float

    @property
    def mean_roc_auc(self) -> float:
        return float(np.mean(self.roc_auc))

    @property
    def mean_pr_auc(self) -> float:
        return float(np.mean(self.pr_auc))

    def to_dict(self) -> dict[str, Any]:
        return {
            "roc_auc_mean": round(self.mean_roc_auc, 4),
            "roc_auc_sd": round(float(np.std(self.roc_auc)), 4),
            "pr_auc_mean": round(self.mean_pr_auc, 4),
            "pr_auc_sd": round(float(np.std(self.pr_auc)), 4),
            "roc_auc_folds": [round(v, 4) for v in self.roc_auc],
            "pr_auc_folds": [round(v, 4) for v in self.pr_auc],
            "pooled_out_of_fold_roc_auc": round(self.pooled_roc_auc, 4),
            "pooled_out_of_fold_pr_auc": round(self.pooled_pr_auc, 4),
        }


@dataclass(frozen=True)
class TagReport:
    """What teaching one tag measured and decided."""

    name: str
    positives: int
    negatives: int
    folds: int
    query: ScorerQuality
    probe: ScorerQuality
    scorer: Scorer
    threshold: float
    out_of_fold_f1: float
    warnings: list[str]
    train_seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "positives": self.positives,
            "negatives": self.negatives,
            "prevalence": round(self.positives / (self.positives + self.negatives), 4),
            "folds": self.folds,
            "split": "grouped by track or group column, stratified",
            "query": self.query.to_dict(),
            "probe": self.probe.to_dict(),
            "scorer": self.scorer,
            "query_beat_probe": self.query.mean_roc_auc >= self.probe.mean_roc_auc,
            "threshold": round(self.threshold, 6),
            "threshold_rule": "best F1 on out-of-fold scores",
            "out_of_fold_f1": round(self.out_of_fold_f1, 4),
            "warnings": self.warnings,
            "train_seconds": round(self.train_seconds, 2),
        }


Progress = Callable[[str], None]


def grouped_folds(
    groups: Sequence[str], labels: npt.NDArray[np.int64], folds: int, seed: int
) -> npt.NDArray[np.int64]:
    """A fold per track: whole groups go to one fold, groups holding a positive are spread
    evenly over the folds and so are the others (stratified by group)."""
    positive_groups = sorted({g for g, y in zip(groups, labels, strict=True) if y == 1})
    negative_groups = sorted(set(groups) - set(positive_groups))
    rng = random.Random(seed)
    rng.shuffle(positive_groups)
    rng.shuffle(negative_groups)
    fold_of: dict[str, int] = {}
    for i, group in enumerate(positive_groups):
        fold_of[group] = i % folds
    # The negatives continue where the positives stopped, so fold sizes stay even.
    for i, group in enumerate(negative_groups, start=len(positive_groups)):
        fold_of[group] = i % folds
    return np.array([fold_of[g] for g in groups], dtype=np.int64)


@dataclass
class _TagData:
    name: str
    tracks: npt.NDArray[np.int64]  # indices into the example list
    labels: npt.NDArray[np.int64]
    groups: list[str]
    folds: int


def _tag_data(
    examples: ExampleSet, tag: str, config: TeachConfig, failed: set[int]
) -> _TagData | str:
    tracks, labels, groups = [], [], []
    for index, example in enumerate(examples.examples):
        label = example.label(tag, config.others_are_negatives)
        if label is None or index in failed:
            continue
        tracks.append(index)
        labels.append(label)
        groups.append(example.group or f"track:{example.path}")
    y = np.array(labels, dtype=np.int64)
    positives, negatives = int(y.sum()), int(len(y) - y.sum())
    if positives < 2:
        return f"tag {tag!r}: {positives} positive example(s); at least 2 are needed (15+ to trust)"
    if negatives == 0:
        return (
            f"tag {tag!r}: no negative examples; add a negatives/ or not-{tag}/ folder, "
            "other tags' examples, or draw negatives (--draw-negatives with --db or --pool)"
        )
    positive_groups = {g for g, label in zip(groups, labels, strict=True) if label == 1}
    negative_groups = set(groups) - positive_groups
    folds = min(config.folds, len(positive_groups), len(negative_groups))
    if folds < 2:
        return (
            f"tag {tag!r}: its positives or its negatives all lie in one group; "
            "cross-validation needs two groups of each"
        )
    return _TagData(tag, np.array(tracks, dtype=np.int64), y, groups, folds)


def _window_labels(windows: Windows, tracks: npt.NDArray[np.int64], labels: Any) -> torch.Tensor:
    label_of = dict(zip(tracks.tolist(), np.asarray(labels).tolist(), strict=True))
    return torch.tensor([float(label_of[t]) for t in windows.track.tolist()])


def _fit_both(
    model: Query2Label,
    windows: Windows,
    tracks: npt.NDArray[np.int64],
    labels: npt.NDArray[np.int64],
    config: TeachConfig,
) -> tuple[QueryHead, ProbeHead]:
    train = windows.subset(tracks, config.fit.windows_per_track)
    window_labels = _window_labels(train, tracks, labels)
    query = fit_query(model, train, window_labels, config.fit, seed=config.seed)
    probe = fit_probe(train, window_labels, config.fit)
    return query, probe


@contextmanager
def _one_thread() -> Iterator[None]:
    """Fits run on one thread: their matrices are small (one query, a few thousand windows),
    and a second thread only adds synchronisation (60 ms a step on one thread, 350 ms on two
    on the shared 2-core test machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def teach_tag(
    model: Query2Label,
    windows: Windows,
    data: _TagData,
    config: TeachConfig,
    progress: Progress | None = None,
) -> tuple[TagReport, QueryHead, ProbeHead]:
    """Cross-validate both scorers on one tag, choose, and train the shipped heads."""
    import time

    started = time.monotonic()
    fold = grouped_folds(data.groups, data.labels, data.folds, config.seed)
    out_of_fold = {"query": np.zeros(len(data.tracks)), "probe": np.zeros(len(data.tracks))}
    per_fold: dict[str, tuple[list[float], list[float]]] = {"query": ([], []), "probe": ([], [])}
    for f in range(data.folds):
        train, test = fold != f, fold == f
        query, probe = _fit_both(model, windows, data.tracks[train], data.labels[train], config)
        held_out = windows.subset(data.tracks[test])
        tracks = torch.from_numpy(data.tracks[test])
        scores = {
            "query": track_scores(query_logits(model, held_out, query), held_out.track, tracks),
            "probe": track_scores(probe_logits(held_out, probe), held_out.track, tracks),
        }
        for name, values in scores.items():
            out_of_fold[name][test] = values
            per_fold[name][0].append(roc_auc(data.labels[test], values))
            per_fold[name][1].append(average_precision(data.labels[test], values))
        if progress is not None:
            progress(f"{data.name}: fold {f + 1}/{data.folds}")
    quality = {
        name: ScorerQuality(
            roc_auc=per_fold[name][0],
            pr_auc=per_fold[name][1],
            pooled_roc_auc=roc_auc(data.labels, out_of_fold[name]),
            pooled_pr_auc=average_precision(data.labels, out_of_fold[name]),
        )
        for name in ("query", "probe")
    }
    q, p = quality["query"], quality["probe"]
    chosen: Scorer = (
        "query" if (q.mean_roc_auc, q.mean_pr_auc) >= (p.mean_roc_auc, p.mean_pr_auc) else "probe"
    )
    threshold, f1 = best_f1_threshold(data.labels, out_of_fold[chosen])
    query, probe = _fit_both(model, windows, data.tracks, data.labels, config)
    if progress is not None:
        progress(f"{data.name}: final fit")
    positives = int(data.labels.sum())
    warnings = _warnings(data, quality[chosen], positives, config)
    report = TagReport(
        name=data.name,
        positives=positives,
        negatives=len(data.labels) - positives,
        folds=data.folds,
        query=q,
        probe=p,
        scorer=chosen,
        threshold=threshold,
        out_of_fold_f1=f1,
        warnings=warnings,
        train_seconds=time.monotonic() - started,
    )
    return report, query, probe


def _warnings(
    data: _TagData, quality: ScorerQuality, positives: int, config: TeachConfig
) -> list[str]:
    warnings = []
    if positives < config.few_positives:
        warnings.append(
            f"only {positives} positive tracks: the quality figures are a rough preview; "
            f"{config.few_positives}+ (50+ for reliable figures) are recommended"
        )
    if data.folds < config.folds:
        warnings.append(f"{data.folds} folds instead of {config.folds}: too few groups")
    finite = [v for v in quality.roc_auc if not math.isnan(v)]
    if finite and max(finite) - min(finite) > config.disagreeing_folds:
        warnings.append(
            f"the folds disagree (ROC-AUC from {min(finite):.2f} to {max(finite):.2f}): the "
            "examples may be too few or too mixed to judge this tag"
        )
    return warnings


@dataclass(frozen=True)
class Taught:
    tag_set: TagSet
    reports: list[TagReport]
    cache_hits: int
    cache_misses: int


def teach(
    checkpoint: Checkpoint,
    examples: ExampleSet,
    cache: FeatureCache,
    *,
    name: str,
    taxonomy: str,
    categories: dict[str, Category] | None = None,
    config: TeachConfig | None = None,
    file_progress: Progress | None = None,
    fit_progress: Progress | None = None,
) -> Taught:
    """Teach every tag of `examples`; raises TeachError listing every problem."""
    config = config or TeachConfig()
    categories = categories or {}
    model = checkpoint.model
    if not isinstance(model, Query2Label):
        raise TeachError([f"{checkpoint.model_id} has no label queries (not a Query2Label)"])
    tags = examples.tags
    problems = [
        f"--category names {t!r}, which no example teaches" for t in categories if t not in tags
    ]
    if not tags:
        problems.append("no tag has a positive example")
    try:
        vocabulary = [Tag(t, categories.get(t, "other"), t, taxonomy=taxonomy) for t in tags]
    except ValueError as error:
        problems.append(str(error))
        vocabulary = []
    if problems:
        raise TeachError(problems)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    paths = [e.path for e in examples.examples]
    windows, digests, failures = gather(cache, paths, file_progress)
    if failures:
        raise TeachError(
            [f"cannot use {len(failures)} example file(s); fix or remove them"]
            + [f"{f.path}: {f.reason}" for f in failures]
        )
    data = [_tag_data(examples, t, config, set()) for t in tags]
    refused = [d for d in data if isinstance(d, str)]
    if refused:
        raise TeachError(refused)
    reports: list[TagReport] = []
    heads: list[tuple[QueryHead, ProbeHead]] = []
    for tag_data in data:
        assert not isinstance(tag_data, str)
        with _one_thread():
            report, query, probe = teach_tag(model, windows, tag_data, config, fit_progress)
        reports.append(report)
        heads.append((query, probe))
    tag_set = TagSet(
        name=name,
        taxonomy=taxonomy,
        base=BaseBinding.of(checkpoint),
        tags=tuple(
            TaughtTag(tag=tag, scorer=r.scorer, threshold=r.threshold, quality=r.to_dict())
            for tag, r in zip(vocabulary, reports, strict=True)
        ),
        queries=torch.stack([q.query for q, _ in heads]),
        query_rows=torch.stack([q.row for q, _ in heads]),
        query_biases=torch.stack([q.bias for q, _ in heads]),
        probe_weights=torch.stack([p.weight for _, p in heads]),
        probe_biases=torch.stack([p.bias for _, p in heads]),
        examples=tuple(e.to_record(d) for e, d in zip(examples.examples, digests, strict=True)),
        provenance={
            "teach_config": asdict(config),
            "cache_windows_per_file": cache.max_windows,
        },
    )
    return Taught(tag_set, reports, cache.hits, cache.misses)
