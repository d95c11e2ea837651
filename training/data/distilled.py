"""The default model's teacher-labelled corpus (`data/distill`) as a prepared dataset.

The distillation cache (see `training.distill.cache`) holds real Debian music and music21
renders cut into 59,049-sample windows, each with the four musicnn teachers' scores and, where
known, the truth (the instruments and voices that really play). The teacher of each vocabulary
is the one `choose-teachers` recorded in the cache (`training.distill.teachers`), so every window
has 100 teacher scores: the 50 MTT tags, then the 50 MSD tags. Its train/valid/test splits
hold out whole packages and pieces.
This turns it into the format `train`, `evaluate` and `compare` read, so the paper's comparison
runs on it unchanged:

- every window is one clip (its own 3.69 s; nothing of a window leaks into another split);
- labels are 0/1: the teacher's score >= `threshold` (0.3, the default model's agreement
  labels), replaced by the render's instrument truth where that is known;
- the vocabulary keeps only the tags with at least `min_positives` positive windows in every
  split of the whole cache, so macro ROC-AUC and PR-AUC average over tags that can be
  measured (a tag without positives in a subset is skipped by the metrics, as always);
- optionally a seeded random subset of windows per split, for a compute budget.

With `soft` it is the default model's training data instead: every one of the 100 tags is kept
and each window also carries float soft targets (the teacher's probabilities, replaced by the
render's instrument truth where that is known) for `train` with `targets = "soft"`; the 0/1
labels stay the agreement labels the model is selected and calibrated against.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from training.data.store import SPLITS, DatasetError, DatasetWriter, PreparedDataset
from training.distill.cache import SAMPLE_RATE
from training.distill.teachers import VOCABULARY, combined_scores, read_choice

DEFAULT_THRESHOLD = 0.3
DEFAULT_MIN_POSITIVES = 10


def _read_index(cache: Path) -> list[dict[str, object]]:
    index = cache / "index.jsonl"
    if not index.is_file():
        raise DatasetError(
            f"{cache} is not a distillation cache (no index.jsonl): build it with "
            "`python -m training label` (or `make default-model`)"
        )
    with index.open() as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    # The cache appends a row per finished source; a re-run may repeat one: keep the last.
    return list({str(row["source_id"]): row for row in rows}.values())


def window_labels(teacher: np.ndarray, truth: np.ndarray, threshold: float) -> np.ndarray:
    """(N, C) 0/1 labels: teacher score >= threshold, or the ground truth where it is known."""
    binary = (teacher >= threshold).astype(np.uint8)
    return np.where(truth >= 0, truth, binary).astype(np.uint8)


def soft_targets(teacher: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """(N, C) float32 distillation targets: teacher probabilities, or the ground truth."""
    return np.where(truth >= 0, truth, teacher).astype(np.float32)


LICENCE = (
    "non-commercial lineage: the MTT teachers were trained on MagnaTagATune (CC BY-NC-SA 3.0), "
    "the MSD teachers on the Million Song Dataset's Last.fm tags (non-commercial research use)"
)


def _choose(n_total: int, limit: int | None, rng: np.random.Generator) -> np.ndarray:
    if limit is None or limit >= n_total:
        return np.arange(n_total)
    return np.sort(rng.choice(n_total, size=limit, replace=False))


def prepare_distilled(
    cache: str | Path,
    out: str | Path,
    *,
    limits: Mapping[str, int | None] | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    min_positives: int = DEFAULT_MIN_POSITIVES,
    seed: int = 0,
    overwrite: bool = False,
    soft: bool = False,
) -> PreparedDataset:
    """Write the cache at `cache` as a prepared dataset at `out`.

    Args:
        limits: At most this many windows per split (a seeded random subset); None keeps all.
        threshold: Teacher score at or above which a tag counts as present.
        min_positives: Tags with fewer positive windows than this in any split are dropped.
        seed: Seed of the window subsets.
        soft: Keep all 100 tags and store the soft targets too (see the module docstring).

    Raises:
        DatasetError: not a cache, an empty split, or no tag with enough positives.
    """
    cache = Path(cache)
    limits = dict(limits or {})
    rows = sorted(_read_index(cache), key=lambda r: str(r["source_id"]))
    try:
        choice = read_choice(cache)
    except FileNotFoundError as error:
        raise DatasetError(str(error)) from None
    choices: dict[str, str] = choice["choices"]
    rng = np.random.default_rng(seed)
    chosen: dict[str, list[tuple[dict[str, object], np.ndarray]]] = {}
    labels: dict[str, np.ndarray] = {}
    targets: dict[str, np.ndarray] = {}
    full_positives = []
    for split in SPLITS:
        sources = [r for r in rows if r["split"] == split]
        if not sources:
            raise DatasetError(f"{cache} has no sources in the {split} split")
        scores = [
            (
                combined_scores(cache / str(r["source_id"]), choices),
                np.load(cache / str(r["source_id"]) / "labels.npy"),
            )
            for r in sources
        ]
        every = [window_labels(teacher, truth, threshold) for teacher, truth in scores]
        full_positives.append(sum((e > 0).sum(axis=0) for e in every))
        counts = np.array([len(e) for e in every])
        picked = _choose(int(counts.sum()), limits.get(split), rng)
        owner = np.searchsorted(np.cumsum(counts), picked, side="right")
        first = np.concatenate([[0], np.cumsum(counts)[:-1]])
        chosen[split] = []
        for k, row in enumerate(sources):
            rows_k = picked[owner == k] - first[k]
            if len(rows_k):
                chosen[split].append((row, rows_k))
        labels[split] = np.concatenate(every)[picked]  # `picked` is sorted: source order
        if soft:
            targets[split] = np.concatenate([soft_targets(*pair) for pair in scores])[picked]

    # The vocabulary depends on the whole corpus, not on the subset drawn for a budget.
    positives = np.stack(full_positives)
    # Distillation learns every tag the teacher scores, rare ones included.
    keep = (
        np.arange(len(VOCABULARY))
        if soft
        else np.flatnonzero((positives >= min_positives).all(axis=0))
    )
    if len(keep) == 0:
        raise DatasetError(
            f"no tag has {min_positives} positive windows in every split; lower min_positives"
        )
    tags = [VOCABULARY[k] for k in keep]
    writer = DatasetWriter(
        out, sample_rate=SAMPLE_RATE, dtype="int16", n_classes=len(tags), overwrite=overwrite
    )
    try:
        for split in SPLITS:
            offset = 0
            for row, rows_k in chosen[split]:
                windows = np.load(cache / str(row["source_id"]) / "windows.npy", mmap_mode="r")
                for j, window_row in enumerate(rows_k):
                    writer.add(
                        f"{row['source_id']}/{int(window_row)}",
                        str(row["path"]),
                        np.asarray(windows[window_row]),
                        labels[split][offset + j, keep],
                        split,
                        targets[split][offset + j, keep] if soft else None,
                    )
                offset += len(rows_k)
        return writer.finish(
            tags,
            source={
                "kind": "distillation cache",
                "cache": str(cache),
                "targets": "soft" if soft else "hard",
                "teachers": {
                    taxonomy: f"{described} (musicnn==0.1.0, ISC)"
                    for taxonomy, described in choice["described"].items()
                },
                "description": "real music from Debian packages and rendered music21 pieces, "
                "labelled by the teachers; see docs/model-card.md",
                # Exported with every model trained on it: the teachers' data is non-commercial.
                "licence": LICENCE,
                "threshold": threshold,
                "min_positives": None if soft else min_positives,
                "limits": {s: limits.get(s) for s in SPLITS},
                "seed": seed,
                "positives": {
                    split: {VOCABULARY[k].id: int((labels[split][:, k] > 0).sum()) for k in keep}
                    for split in SPLITS
                },
            },
            require_splits=SPLITS,
        )
    except BaseException:
        writer.abort()
        raise
