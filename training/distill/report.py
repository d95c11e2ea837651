"""Evaluate the distilled student on the held-out test split and write docs/default-model.md.

    python -m training report --student model/weights/default.safetensors \
        [--baseline runs/distill-rescnn/model.safetensors]

Three measurements, all on sources never seen in training or validation:
1. agreement with the teacher: macro ROC-AUC of the student's scores against the teacher's
   labels (teacher score >= 0.3 is a positive) over tags with at least 10 positive windows;
2. instrument ground truth on held-out renders: macro ROC-AUC over the instrument tags whose
   truth is known, for the student and for the teacher on the same windows;
3. speed: windows per second of student and teacher, fp32, same batch size, same threads.
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from model.base import TaggingModel
from model.checkpoint import load_checkpoint
from model.tags import MTAT_TAG_NAMES, MTAT_TAGS
from training.distill.cache import TEACHER_WEIGHTS
from training.distill.data import (
    MIN_POSITIVES,
    TEACHER_POSITIVE,
    Split,
    frequent_tag_auc,
    load_split,
    score_split,
)
from training.metrics import tagging_metrics

INSTRUMENT_TAGS = [t.name for t in MTAT_TAGS if t.category == "instrument"]


def agreement_table(split: Split, scores: np.ndarray) -> tuple[float, list[str]]:
    """Agreement with the teacher's own labels (no ground truth mixed in)."""
    labels = (split.teacher >= TEACHER_POSITIVE).astype(np.int8)
    roc, names = frequent_tag_auc(labels, scores)
    return float("nan") if roc is None else roc, names


def instrument_auc(split: Split, scores: np.ndarray) -> tuple[float, list[str]]:
    renders = split.kinds == "render"
    columns = [MTAT_TAG_NAMES.index(t) for t in INSTRUMENT_TAGS]
    labels = split.labels[renders][:, columns]
    known = (labels >= 0).all(axis=0)
    names = [t for t, k in zip(INSTRUMENT_TAGS, known, strict=True) if k]
    metrics = tagging_metrics(labels[:, known], scores[renders][:, columns][:, known], names)
    evaluated = [n for n in names if n not in metrics.skipped]
    return float(metrics.roc_auc or float("nan")), evaluated


def windows_per_second(model: TaggingModel, batch_size: int = 32, repeats: int = 5) -> float:
    batch = torch.randn(batch_size, model.audio.window_samples) * 0.1
    with torch.inference_mode():
        model(batch)
        started = time.perf_counter()
        for _ in range(repeats):
            model(batch)
    return batch_size * repeats / (time.perf_counter() - started)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--student", type=Path, default=Path("model/weights/default.safetensors"))
    parser.add_argument("--baseline", type=Path, default=None, help="a ResCNN student")
    parser.add_argument("--cache", type=Path, default=Path("data/distill"))
    parser.add_argument("--output", type=Path, default=Path("docs/default-model.md"))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    test = load_split(args.cache, "test")
    teacher = load_checkpoint(TEACHER_WEIGHTS).model
    checkpoints = {"q2l-small student": load_checkpoint(args.student)}
    if args.baseline:
        checkpoints["ResCNN student"] = load_checkpoint(args.baseline)
    students = {name: checkpoint.model for name, checkpoint in checkpoints.items()}
    rows_budget = []
    for name, checkpoint in checkpoints.items():
        provenance = checkpoint.metadata.provenance
        recipe, metrics = provenance.get("recipe", {}), provenance.get("metrics", {})
        valid = metrics.get("valid_agreement_roc_auc", float("nan"))
        rows_budget.append(
            f"| {name} | {checkpoint.metadata.preset} | {checkpoint.model.num_parameters():,} "
            f"| {recipe.get('epochs', '?')} | {valid:.4f} |"
        )
    teacher_scores = score_split(teacher, test)
    rows_agree, rows_instr, rows_speed = [], [], []
    for name, model in students.items():
        scores = score_split(model, test)
        roc, tags = agreement_table(test, scores)
        rows_agree.append(f"| {name} | {roc:.4f} | {len(tags)} |")
        instr, instr_tags = instrument_auc(test, scores)
        rows_instr.append(f"| {name} | {instr:.4f} |")
        rows_speed.append((name, windows_per_second(model)))
    teacher_instr, instr_tags = instrument_auc(test, teacher_scores)
    rows_instr.append(f"| teacher (MTT_musicnn) | {teacher_instr:.4f} |")
    teacher_speed = windows_per_second(teacher)
    n_music = int((test.kinds == "music").sum())
    n_render = int((test.kinds == "render").sum())
    machine = f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"
    lines = [
        "# Default model: evaluation report",
        "",
        f"Produced by `python -m training report --student {args.student}"
        + (f" --baseline {args.baseline}" if args.baseline else "")
        + f"` on {dt.date.today().isoformat()} ({machine}).",
        "",
        f"Held-out test split: {n_music} windows of real music from packages never used in "
        f"training or validation, and {n_render} windows of renders of held-out pieces.",
        "",
        "## 1. Agreement with the teacher",
        "",
        "Macro ROC-AUC of the student's scores against the teacher's labels (teacher score >= 0.3"
        f" is positive), over tags with at least {MIN_POSITIVES} positive test windows "
        f"({len(agreement_table(test, teacher_scores)[1])} tags). Target: >= 0.90.",
        "",
        "| model | agreement ROC-AUC | tags |",
        "|---|---|---|",
        *rows_agree,
        "",
        "## 2. Instrument ground truth on held-out renders",
        "",
        f"Macro ROC-AUC over the instrument tags with known truth ({', '.join(instr_tags)}). "
        "Target: the student beats the teacher.",
        "",
        "| model | instrument ROC-AUC |",
        "|---|---|",
        *rows_instr,
        "",
        "## 3. Speed",
        "",
        "Windows (59,049 samples) per second, fp32 eager, batch 32, same threads.",
        "",
        "| model | windows/s | vs teacher |",
        "|---|---|---|",
        *[f"| {n} | {s:.1f} | {s / teacher_speed:.2f}x |" for n, s in rows_speed],
        f"| teacher (MTT_musicnn) | {teacher_speed:.1f} | 1.00x |",
        "",
        "## Training budgets of the compared students",
        "",
        "Both students come from `python -m training train --config "
        "training/experiments/default-model.toml` with the same data, targets, "
        "optimiser and batch size; the epochs (the length of the cosine schedule) are taken from "
        "each checkpoint's recorded recipe, the validation agreement from its metrics. The epoch "
        "logs of the committed report are copied to `docs/logs/distill-<preset>.csv`.",
        "",
        "| model | preset | parameters | epochs | validation agreement ROC-AUC |",
        "|---|---|---|---|---|",
        *rows_budget,
        "",
    ]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
