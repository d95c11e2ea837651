"""Choose each vocabulary's teacher on validation ground truth and record it in the cache.

    python -m training choose-teachers [--cache data/distill]

Per vocabulary, three candidates are scored on the validation windows whose truth is known (the
renders' instruments and voices, the recorded voices): each of the two teachers, and the mean of
their probabilities. The score is the macro ROC-AUC over the tags with at least
`MIN_TRUTH_WINDOWS` positive and as many negative known windows. The mean is chosen only if it
beats the better single teacher; `<cache>/teachers.json` records the choice and every figure,
per tag too.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from training.distill.cache import read_index
from training.distill.teachers import (
    CHOICE_FILE,
    MEAN,
    TAG_IDS,
    TAXONOMIES,
    choice_label,
    taxonomy_scores,
    teachers_of,
)
from training.metrics import tagging_metrics

MIN_TRUTH_WINDOWS = 10


def _validation(cache: Path, split: str) -> tuple[list[Path], np.ndarray]:
    rows = sorted(
        (r for r in read_index(cache).values() if r["split"] == split),
        key=lambda r: str(r["source_id"]),
    )
    if not rows:
        raise SystemExit(f"no cached sources in the {split} split of {cache}")
    folders = [cache / str(row["source_id"]) for row in rows]
    truth = np.concatenate([np.load(folder / "labels.npy") for folder in folders])
    return folders, truth


def truth_auc(truth: np.ndarray, scores: np.ndarray, tag_ids: Sequence[str]) -> dict[str, Any]:
    """Macro and per-tag ROC-AUC on the windows whose truth is known, per tag.

    A tag is evaluated on the windows where its own truth is known; tags with fewer than
    MIN_TRUTH_WINDOWS positives or negatives there are left out and listed.
    """
    per_tag: dict[str, float] = {}
    skipped: list[str] = []
    for column, tag in enumerate(tag_ids):
        known = truth[:, column] >= 0
        positives = int((truth[known, column] == 1).sum())
        negatives = int((truth[known, column] == 0).sum())
        if min(positives, negatives) < MIN_TRUTH_WINDOWS:
            skipped.append(tag)
            continue
        result = tagging_metrics(
            truth[known, column : column + 1], scores[known, column : column + 1], [tag]
        )
        assert result.roc_auc is not None
        per_tag[tag] = round(float(result.roc_auc), 4)
    macro = float(np.mean(list(per_tag.values()))) if per_tag else None
    return {"macro_roc_auc": macro, "per_tag": per_tag, "skipped": skipped}


def choose(cache: Path, split: str = "valid") -> dict[str, Any]:
    """Score every candidate of every vocabulary; returns the document written to the cache."""
    folders, truth = _validation(cache, split)
    document: dict[str, Any] = {"split": split, "min_truth_windows": MIN_TRUTH_WINDOWS}
    choices: dict[str, str] = {}
    figures: dict[str, Any] = {}
    for taxonomy_index, taxonomy in enumerate(TAXONOMIES):
        columns = slice(50 * taxonomy_index, 50 * taxonomy_index + 50)
        tag_ids = TAG_IDS[columns]
        candidates = [t.name for t in teachers_of(taxonomy)] + [MEAN]
        results = {
            name: truth_auc(
                truth[:, columns],
                np.concatenate([taxonomy_scores(f, taxonomy, name) for f in folders]),
                tag_ids,
            )
            for name in candidates
        }
        singles = [n for n in candidates if n != MEAN]
        best_single = max(singles, key=lambda n: results[n]["macro_roc_auc"] or -1.0)
        mean_auc, single_auc = results[MEAN]["macro_roc_auc"], results[best_single]["macro_roc_auc"]
        wins = mean_auc is not None and single_auc is not None and mean_auc > single_auc
        choices[taxonomy] = MEAN if wins else best_single
        figures[taxonomy] = results
    document |= {
        "choices": choices,
        "described": {tax: choice_label(tax, name) for tax, name in choices.items()},
        "figures": figures,
    }
    return document


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=Path("data/distill"))
    parser.add_argument("--split", default="valid", help="the split to choose on")
    args = parser.parse_args(argv)
    document = choose(args.cache, args.split)
    (args.cache / CHOICE_FILE).write_text(json.dumps(document, indent=2) + "\n")
    for taxonomy, results in document["figures"].items():
        for name, result in results.items():
            macro = result["macro_roc_auc"]
            shown = "n/a" if macro is None else f"{macro:.4f}"
            print(f"{taxonomy} {name}: {shown} over {len(result['per_tag'])} tags")
        print(f"{taxonomy}: chose {document['described'][taxonomy]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
