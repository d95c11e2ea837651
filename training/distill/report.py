"""Evaluate the default model on held-out data; write docs/default-model.md and its data.

    python -m training report [--student model/weights/default.safetensors]
        [--v1 model/weights/default-v1.safetensors]
        [--baseline runs/distill-rescnn/model.safetensors]

    python -m training report --candidate runs/v3-q2l-small/model.safetensors
        [--gate-json runs/v3-q2l-small/gate.json] [--cache data/v3]

With `--candidate` it is the regression gate instead (`training.distill.gate`): the candidate
against the current default (`--student`) on MTT and MSD track agreement with the chosen
teachers on held-out real music and on every ground-truth group, and against v1 on the MTT
ones; it writes the comparisons to `--gate-json` and exits 1 when the candidate is worse than
either beyond noise. `promote` reads that file.

Everything is measured on sources never used in training, validation or calibration (the test
split: whole packages and whole pieces held out), except the threshold bootstrap, which is
about the validation windows the thresholds were calibrated on. The per-tag figures behind
every average are written to `docs/results/default-model.json`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import platform
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model.checkpoint import Checkpoint, load_checkpoint
from training.distill import gate
from training.distill.choose import MIN_TRUTH_WINDOWS
from training.distill.data import MIN_POSITIVES, TEACHER_POSITIVE, Split, load_split, score_split
from training.distill.evaluation import (
    MIN_TRACK_POSITIVES,
    agreement,
    ground_truth,
    taxonomy_columns,
    teacher_scores,
    threshold_stability,
    track_means,
    truth_groups,
    windows_per_second,
)
from training.distill.teachers import TAG_IDS, TAXONOMIES, TEACHERS, read_choice
from training.export import CALIBRATION_MIN_POSITIVES

STUDENT, V1, BASELINE = "v2 student", "v1 student", "baseline student"


def _as_two_vocabulary(checkpoint: Checkpoint, scores: np.ndarray) -> np.ndarray:
    """(N, 100) scores: a single-vocabulary MTT model's 50 columns, NaN for the MSD tags."""
    if scores.shape[1] == len(TAG_IDS):
        return scores
    names = [tag.name for tag in checkpoint.metadata.tags]
    full = np.full((len(scores), len(TAG_IDS)), np.nan, dtype=np.float32)
    for column, tag_id in enumerate(TAG_IDS[taxonomy_columns("mtt")]):
        full[:, column] = scores[:, names.index(tag_id.removeprefix("mtt/"))]
    return full


CANDIDATE, DEFAULT = "candidate", "default"


def _track_rows(split: Split, scores: np.ndarray, columns: slice) -> tuple[np.ndarray, ...]:
    """Track-level agreement rows on real music: (labels, scores, track ids), one per track."""
    music = split.kinds == "music"
    tracks = split.source_ids[music]
    teacher = track_means(split.teacher[music][:, columns], tracks)
    labels = (teacher >= TEACHER_POSITIVE).astype(np.int8)
    return labels, track_means(scores[music][:, columns], tracks), np.unique(tracks)


def regression_gate(
    split: Split,
    candidate: np.ndarray,
    references: dict[str, np.ndarray],
    rounds: int = gate.BOOTSTRAP_ROUNDS,
) -> gate.GateResult:
    """The candidate's (N, 100) scores against each reference's on the held-out split: track
    agreement per vocabulary (tags with >= MIN_TRACK_POSITIVES positive tracks) and ground
    truth per group (tags with >= MIN_TRUTH_WINDOWS positive and negative windows). A
    reference with no scores for a measure's tags (v1 and the MSD tags) is not compared there;
    a measure with no measurable tag is listed as unmeasured, which fails the gate.
    """
    comparisons: list[gate.Comparison] = []
    unmeasured: list[str] = []

    def add(measure: str, name: str, labels: np.ndarray, *scores_and_tracks: np.ndarray) -> None:
        try:
            comparisons.append(
                gate.compare(measure, name, labels, *scores_and_tracks, rounds=rounds)
            )
        except ValueError:  # no kept tag has both classes
            unmeasured.append(f"{measure} vs {name}")

    for taxonomy in TAXONOMIES:
        columns = taxonomy_columns(taxonomy)
        labels, candidate_tracks, tracks = _track_rows(split, candidate, columns)
        keep = gate.select_tags(labels, MIN_TRACK_POSITIVES)
        for name, values in references.items():
            if np.isnan(values[:, columns]).all():
                continue  # v1 has no MSD tags
            measure = f"{taxonomy} track agreement"
            if not keep:
                unmeasured.append(f"{measure} vs {name}")
                continue
            _, reference_tracks, _ = _track_rows(split, values, columns)
            add(
                measure,
                name,
                labels[:, keep],
                candidate_tracks[:, keep],
                reference_tracks[:, keep],
                tracks,
            )
    for group, ids in truth_groups().items():
        group_columns = gate.columns_of(TAG_IDS, ids)
        truth = split.labels[:, group_columns]
        keep = [
            group_columns[k] for k in gate.select_tags(truth, MIN_TRUTH_WINDOWS, negatives=True)
        ]
        rows = (split.labels[:, keep] >= 0).any(axis=1) if keep else np.zeros(len(split), bool)
        for name, values in references.items():
            if np.isnan(values[:, group_columns]).all():
                continue  # v1 has no MSD tags
            measure = f"{group} ground truth"
            if not keep:
                unmeasured.append(f"{measure} vs {name}")
                continue
            add(
                measure,
                name,
                split.labels[rows][:, keep],
                candidate[rows][:, keep],
                values[rows][:, keep],
                split.source_ids[rows],
            )
    return gate.GateResult(tuple(comparisons), tuple(unmeasured))


def run_gate(args: argparse.Namespace) -> int:
    """Score the candidate, the default and v1 on the test split; write and print the gate."""
    test = load_split(args.cache, "test")
    paths = {CANDIDATE: args.candidate, DEFAULT: args.student}
    if args.v1 is not None and args.v1.is_file():
        paths[V1] = args.v1
    scores = {}
    for name, path in paths.items():
        checkpoint = load_checkpoint(path)
        scores[name] = _as_two_vocabulary(checkpoint, score_split(checkpoint.model, test))
    candidate = scores.pop(CANDIDATE)
    result = regression_gate(test, candidate, scores, args.rounds)
    document = {
        "command": f"python -m training report --candidate {args.candidate} --cache {args.cache}",
        "date": dt.date.today().isoformat(),
        "candidate": str(args.candidate),
        "candidate_sha256": file_sha256(args.candidate),
        "references": {name: str(path) for name, path in paths.items() if name != CANDIDATE},
        "test": {
            "music_windows": int((test.kinds == "music").sum()),
            "render_windows": int((test.kinds == "render").sum()),
            "sources": len(np.unique(test.source_ids)),
        },
        **result.to_json(),
    }
    gate_json = args.gate_json or args.candidate.with_name("gate.json")
    gate_json.parent.mkdir(parents=True, exist_ok=True)
    gate_json.write_text(json.dumps(document, indent=1) + "\n")
    print("\n".join(gate.markdown(result)))
    if result.passed:
        print(f"gate passed ({gate_json})")
        return 0
    worse = ", ".join(f"{c.measure} vs {c.reference}" for c in result.regressions) or "nothing"
    print(f"gate FAILED: the candidate is worse beyond noise on {worse} ({gate_json})")
    if result.unmeasured:
        print(f"gate FAILED: not measurable on this test split: {', '.join(result.unmeasured)}")
    return 1


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def student_name(checkpoint: Checkpoint) -> str:
    """How the report names the default: "v3 student" for a `train-distill` export, else v2."""
    recipe = checkpoint.metadata.provenance.get("recipe", {})
    return "v3 student" if recipe.get("version") == "v3" else STUDENT


def measure(args: argparse.Namespace) -> dict[str, Any]:
    choice = read_choice(args.cache)
    test, valid = load_split(args.cache, "test"), load_split(args.cache, "valid")
    default = load_checkpoint(args.student)
    label = student_name(default)
    checkpoints = {label: default}
    if args.v1 is not None and args.v1.is_file():
        checkpoints[V1] = load_checkpoint(args.v1)
    if args.baseline is not None:
        checkpoints[BASELINE] = load_checkpoint(args.baseline)
    scores = {
        name: _as_two_vocabulary(ckpt, score_split(ckpt.model, test).astype(np.float32))
        for name, ckpt in checkpoints.items()
    }
    agreements = {
        taxonomy: {
            name: agreement(test, values[:, taxonomy_columns(taxonomy)], taxonomy)
            for name, values in scores.items()
            if not np.isnan(values[:, taxonomy_columns(taxonomy)]).all()
        }
        for taxonomy in TAXONOMIES
    }
    truth = ground_truth(test, {**scores, **teacher_scores(test)})
    student = default
    valid_scores = score_split(student.model, valid)
    stability = threshold_stability(
        valid.agreement_labels(),
        valid_scores,
        student.metadata.thresholds,
        TAG_IDS,
        CALIBRATION_MIN_POSITIVES,
    )
    speed = {name: windows_per_second(ckpt.model) for name, ckpt in checkpoints.items()}
    for teacher in TEACHERS:
        speed[teacher.published_as] = windows_per_second(load_checkpoint(teacher.weights).model)
    provenance = student.metadata.provenance
    return {
        "command": f"python -m training report --student {args.student}"
        + (f" --v1 {args.v1}" if V1 in checkpoints else "")
        + (f" --baseline {args.baseline}" if BASELINE in checkpoints else ""),
        "date": dt.date.today().isoformat(),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}",
        "teachers": choice,
        "student": label,
        "test": {
            "music_windows": int((test.kinds == "music").sum()),
            "render_windows": int((test.kinds == "render").sum()),
            "sources": len(np.unique(test.source_ids)),
        },
        "agreement": agreements,
        "ground_truth": truth,
        "groups": truth_groups(),
        "speed_windows_per_second": speed,
        "thresholds": {
            "min_positives": CALIBRATION_MIN_POSITIVES,
            "default": provenance.get("training_data", {}).get("threshold", TEACHER_POSITIVE),
            "uncalibrated": provenance.get("uncalibrated_tags", []),
            "stability": stability,
        },
        "training": {
            "epochs": provenance.get("recipe", {}).get("epochs"),
            "best_epoch": provenance.get("best_epoch"),
            "parameters": student.model.num_parameters(),
            "valid_agreement_roc_auc": provenance.get("metrics", {}).get("valid_agreement_roc_auc"),
        },
    }


def _fmt(value: float | None) -> str:
    return "n/a" if value is None or value != value else f"{value:.4f}"


def render(data: dict[str, Any]) -> str:
    student = data.get("student", STUDENT)
    lines = [
        "# Default model: evaluation report",
        "",
        f"Produced by `{data['command']}` on {data['date']} ({data['machine']}); every per-tag "
        "figure behind these averages is in "
        "[results/default-model.json](results/default-model.json).",
        "",
        f"Held-out test split: {data['test']['music_windows']} windows of real music from "
        "packages never used in training, validation or calibration, and "
        f"{data['test']['render_windows']} windows of renders of held-out pieces "
        f"({data['test']['sources']} sources).",
        "",
        "## Teachers",
        "",
        "Per vocabulary, the mean of the musicnn and vgg probabilities if it beats the better "
        "single teacher on validation ground truth (macro ROC-AUC over tags with at least "
        f"{MIN_TRUTH_WINDOWS} positive and {MIN_TRUTH_WINDOWS} negative known windows), "
        "otherwise that teacher:",
        "",
        "| vocabulary | candidate | validation truth ROC-AUC | tags |",
        "|---|---|---|---|",
    ]
    for taxonomy, results in data["teachers"]["figures"].items():
        for name, result in results.items():
            lines.append(
                f"| {taxonomy} | {name} | {_fmt(result['macro_roc_auc'])} | "
                f"{len(result['per_tag'])} |"
            )
    lines += [
        "",
        "Chosen: "
        + "; ".join(f"**{tax}**: {text}" for tax, text in data["teachers"]["described"].items())
        + ".",
        "",
        "## 1. Agreement with the teacher on held-out packages",
        "",
        f"Macro ROC-AUC against the chosen teacher's labels (score >= {TEACHER_POSITIVE}): per "
        f"window over tags with at least {MIN_POSITIVES} positive windows, per track (mean over "
        f"its windows) over tags with at least {MIN_TRACK_POSITIVES} positive tracks.",
        "",
        "| vocabulary | model | window ROC-AUC | tags | track ROC-AUC | tags |",
        "|---|---|---|---|---|---|",
    ]
    for taxonomy, models in data["agreement"].items():
        for name, result in models.items():
            window, track = result["window"], result["track"]
            lines.append(
                f"| {taxonomy} | {name} | {_fmt(window['macro_roc_auc'])} | {window['tags']} | "
                f"{_fmt(track['macro_roc_auc'])} | {track['tags']} |"
            )
    lines += [
        "",
        "## 2. Ground truth on held-out renders and recorded voices",
        "",
        "Macro ROC-AUC per group, each tag on the windows where its truth is known, over tags "
        f"with at least {MIN_TRUTH_WINDOWS} positive and negative known windows. Target: the "
        "student beats every teacher on every group.",
        "",
    ]
    models = sorted({m for group in data["ground_truth"].values() for m in group})
    lines += ["| group | " + " | ".join(models) + " |", "|---|" + "---|" * len(models)]
    for group, per_model in data["ground_truth"].items():
        cells = []
        for model in models:
            result = per_model.get(model)
            cells.append(
                ""
                if result is None
                else f"{_fmt(result['macro_roc_auc'])} ({len(result['per_tag'])})"
            )
        lines.append(f"| {group} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "(In brackets: tags evaluated. Tags per group: "
        + "; ".join(f"{group}: {', '.join(ids)}" for group, ids in data["groups"].items())
        + ".)",
        "",
        "## 3. Speed",
        "",
        "Windows (59,049 samples) per second, fp32 eager, batch 32, same threads, same run.",
        "",
        f"| model | windows/s | vs {student} |",
        "|---|---|---|",
    ]
    speed = data["speed_windows_per_second"]
    for name, value in speed.items():
        lines.append(f"| {name} | {value:.1f} | {value / speed[student]:.2f}x |")
    thresholds = data["thresholds"]
    stability = thresholds["stability"]["per_tag"]
    lines += [
        "",
        "## 4. Thresholds",
        "",
        f"Per tag, the F1-optimal threshold on validation, only for tags with at least "
        f"{thresholds['min_positives']} positive validation windows ({len(stability)} tags); "
        f"the other {len(thresholds['uncalibrated'])} keep {thresholds['default']} (the "
        "teacher-positive level the labels are defined by). Stability: the 5th-95th percentile "
        f"of the threshold over {thresholds['stability']['rounds']} bootstrap resamples of the "
        "validation windows.",
        "",
        "| tag | threshold | positives | bootstrap 5 % | bootstrap 95 % |",
        "|---|---|---|---|---|",
        *[
            f"| {tag} | {row['threshold']:.3f} | {row['positives']} | {row['p05']:.3f} | "
            f"{row['p95']:.3f} |"
            for tag, row in stability.items()
        ],
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--student", type=Path, default=Path("model/weights/default.safetensors"))
    parser.add_argument(
        "--v1", type=Path, default=Path("model/weights/default-v1.safetensors"), help="v1 model"
    )
    parser.add_argument(
        "--baseline", type=Path, default=None, help="another student (e.g. ResCNN) to compare"
    )
    parser.add_argument("--cache", type=Path, default=Path("data/distill"))
    parser.add_argument("--output", type=Path, default=Path("docs/default-model.md"))
    parser.add_argument("--data", type=Path, default=Path("docs/results/default-model.json"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--candidate", type=Path, default=None, help="run the regression gate on this model"
    )
    parser.add_argument(
        "--gate-json", type=Path, default=None, help="gate result (default: beside the candidate)"
    )
    parser.add_argument("--rounds", type=int, default=gate.BOOTSTRAP_ROUNDS, help="bootstrap")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.candidate is not None:
        for path in (args.candidate, args.student):
            if not path.is_file():
                print(f"error: {path} not found", file=sys.stderr)
                return 2
        return run_gate(args)
    data = measure(args)
    args.data.parent.mkdir(parents=True, exist_ok=True)
    args.data.write_text(json.dumps(data, indent=1) + "\n")
    text = render(data)
    args.output.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
