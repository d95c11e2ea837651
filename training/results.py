"""Publish a model comparison: per-run result files -> `docs/results.md` and its plot.

    python -m training.results collect --runs runs/compare-distill-short --schedule short
    python -m training.results collect --runs runs/compare-distill-long --schedule long
    python -m training.results time --config training/experiments/distill-short.toml \
        --models q2l-base,rescnn,hcnn,musicnn --data data/compare-distill
    python -m training.results report

`time` measures each compared model's training and evaluation cost per window, the models
interleaved round by round, so a shared machine's changing load hits them alike (the per-epoch
seconds logged by the runs themselves are kept too, but on a busy machine they vary threefold).
`collect` turns the run directories of a `compare` (machine-local, git-ignored, with
checkpoints) into one small JSON file per run under `docs/results/<experiment>/<schedule>/`
(config, test and validation metrics of the best epoch, the per-epoch log with timings) plus the
dataset's description. `report` needs only those committed files: it writes the results table
(mean ± sample std over seeds), seconds per epoch and Q2L's overhead against ResCNN, the
validation PR-AUC curves and the verdict on each of the paper's claims, all computed from them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from model.zoo import build_model, config_for
from training.config import read_config_file
from training.data.store import PreparedDataset
from training.run import RunDir, read_log

DEFAULT_RESULTS = Path("docs/results/distill")
DEFAULT_OUTPUT = Path("docs/results.md")
DEFAULT_PLOT = Path("docs/img/results-val-pr-auc.png")
MACHINE = "2-core AMD EPYC, no GPU, shared with other jobs"
_TRAIN_KEYS = (
    "schedule", "epochs", "batch_size", "lr", "weight_decay", "warmup", "loss", "asl_gamma_neg",
    "asl_gamma_pos", "asl_clip", "select_by", "eval_crops", "precision",
)  # fmt: skip
_LOG_KEYS = (
    "epoch", "train_loss", "val_loss", "val_roc_auc", "val_pr_auc", "train_seconds",
    "val_seconds", "seconds",
)  # fmt: skip
BASELINES = ("rescnn", "hcnn", "musicnn")
Q2L = "q2l-base"
# Changes beyond the paper, each a variant of q2l-base, and what they change.
EXTENSIONS = {"q2l-asl": "asymmetric loss", "q2l-selfattn": "decoder self-attention"}
PAPER_SECONDS = {"q2l-base": 48.2, "rescnn": 42.9}  # paper Table 2: training + validation


def _number(text: str) -> float | None:
    return float(text) if text not in ("", None) else None


def time_models(
    config_path: Path,
    names: Sequence[str],
    n_classes: int,
    *,
    rounds: int = 5,
    batches: int = 2,
    batch_size: int = 16,
    eval_batch: int = 64,
) -> dict[str, dict[str, list[float]]]:
    """Milliseconds per window of a training step (forward, BCE, backward, Adam) at
    `batch_size` and of evaluation at `eval_batch`, per round, the models interleaved."""
    overrides = read_config_file(config_path).get("overrides", {})
    models = {}
    for name in names:
        torch.manual_seed(0)
        config = config_for(name, {**overrides.get(name, {}), "n_classes": n_classes})
        model = build_model(name, config)
        models[name] = (model, torch.optim.Adam(model.parameters(), lr=1e-4, weight_decay=1e-4))
    timings: dict[str, dict[str, list[float]]] = {n: {"train": [], "eval": []} for n in names}
    for round_ in range(rounds + 1):  # round 0 warms up and is not recorded
        for name, (model, optimizer) in models.items():
            length = model.audio.window_samples
            waveforms = torch.randn(batch_size, length) * 0.1
            labels = (torch.rand(batch_size, n_classes) < 0.2).float()
            model.train()
            started = time.perf_counter()
            for _ in range(batches):
                loss = F.binary_cross_entropy_with_logits(model(waveforms), labels)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()  # type: ignore[no-untyped-call]
                optimizer.step()
            trained = time.perf_counter()
            model.eval()
            with torch.inference_mode():
                model(torch.randn(eval_batch, length) * 0.1)
            finished = time.perf_counter()
            if round_:
                timings[name]["train"].append(1000 * (trained - started) / (batches * batch_size))
                timings[name]["eval"].append(1000 * (finished - trained) / eval_batch)
    return timings


def collect(runs: Path, schedule: str, dest: Path) -> list[Path]:
    """Write `dest/<schedule>/<model>-seed-<n>.json` for every finished run under `runs`."""
    written = []
    for metrics_path in sorted(runs.glob("*/seed-*/metrics.json")):
        run = RunDir(metrics_path.parent)
        final = json.loads(run.metrics.read_text())
        saved = json.loads(run.config.read_text())
        train = saved["train"]
        name = metrics_path.parent.parent.name
        record = {
            "schedule": schedule,
            "name": name,
            "preset": train["preset"],
            "seed": train["seed"],
            "architecture": saved["architecture"],
            "parameters": saved["parameters"],
            "train": {key: train[key] for key in _TRAIN_KEYS if key in train},
            "model_overrides": train["model"],
            "window_samples": saved["model_config"]["audio"]["window_samples"],
            "best_epoch": final["best_epoch"],
            "valid": {k: final["valid"][k] for k in ("roc_auc", "pr_auc", "loss", "n_clips")},
            "test": {
                k: final["test"][k]
                for k in ("roc_auc", "pr_auc", "loss", "n_clips", "n_tags_evaluated")
            },
            "log": [{k: _number(row[k]) for k in _LOG_KEYS} for row in read_log(run.log)],
        }
        out = dest / schedule / f"{name}-seed-{train['seed']}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(record, indent=1) + "\n")
        written.append(out)
        dataset = Path(saved["dataset"]["root"]) / "dataset.json"
        if dataset.is_file():
            info = json.loads(dataset.read_text())
            keep = ("sample_rate", "tags", "clips", "total_samples", "source")
            described = {k: info[k] for k in keep}
            cache = info["source"].get("cache")
            index = Path(cache) / "index.jsonl" if cache else None
            if index is not None and index.is_file():  # what the subsets were drawn from
                totals: dict[str, int] = {}
                for line in index.read_text().splitlines():
                    row = json.loads(line)
                    totals[row["split"]] = totals.get(row["split"], 0) + int(row["n_windows"])
                described["cache_windows"] = totals
            (dest / "dataset.json").write_text(json.dumps(described, indent=1) + "\n")
    return written


@dataclass(frozen=True)
class Model:
    """The runs of one model in one schedule."""

    name: str
    runs: list[dict[str, Any]]

    def values(self, split: str, metric: str) -> np.ndarray:
        return np.array([run[split][metric] for run in self.runs], dtype=np.float64)

    def by_seed(self, split: str, metric: str) -> dict[int, float]:
        return {int(run["seed"]): float(run[split][metric]) for run in self.runs}

    def curves(self) -> np.ndarray:
        """(runs, epochs) validation PR-AUC."""
        length = min(len(run["log"]) for run in self.runs)
        return np.array([[row["val_pr_auc"] for row in run["log"][:length]] for run in self.runs])

    def seconds(self, key: str) -> np.ndarray:
        return np.array([row[key] for run in self.runs for row in run["log"]], dtype=np.float64)


def load(results: Path) -> dict[str, dict[str, Model]]:
    """schedule -> model name -> runs, in a fixed model order."""
    order = [Q2L, *BASELINES, *EXTENSIONS]
    schedules: dict[str, dict[str, Model]] = {}
    folders = [p for p in results.iterdir() if p.is_dir() and any(p.glob("*.json"))]
    for folder in sorted(folders, key=_schedule_epochs):
        runs = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]
        names = sorted({r["name"] for r in runs}, key=lambda n: [*order, n].index(n))
        schedules[folder.name] = {
            n: Model(n, sorted((r for r in runs if r["name"] == n), key=lambda r: r["seed"]))
            for n in names
        }
    return schedules


def _schedule_epochs(folder: Path) -> tuple[int, str]:
    first = json.loads(next(iter(sorted(folder.glob("*.json")))).read_text())
    return int(first["train"]["epochs"]), folder.name


def mean_std(values: np.ndarray) -> tuple[float, float]:
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else math.nan


def _pm(values: np.ndarray) -> str:
    mean, std = mean_std(values)
    return f"{mean:.4f} ± {std:.4f}" if not math.isnan(std) else f"{mean:.4f}"


def paired_difference(a: Model, b: Model, metric: str) -> tuple[float, float, int, int]:
    """Mean and sample std of a − b over the seeds both have, the seeds, and how many a wins."""
    left, right = a.by_seed("test", metric), b.by_seed("test", metric)
    seeds = sorted(set(left) & set(right))
    diffs = np.array([left[s] - right[s] for s in seeds])
    std = float(diffs.std(ddof=1)) if len(diffs) > 1 else math.nan
    return float(diffs.mean()), std, len(seeds), int((diffs > 0).sum())


# Student's t 97.5 % quantiles for 1..10 degrees of freedom (beyond: 10's, slightly strict).
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228)


def verdict(mean: float, std: float, n: int) -> str:
    """A two-sided paired t-test at 5 %: "holds" (significantly positive), "reversed"
    (significantly negative) or "within noise"; with one seed there is no test."""
    if n < 2:
        return f"one seed only ({'ahead' if mean > 0 else 'behind'})"
    if std == 0:
        return "holds" if mean > 0 else "reversed" if mean < 0 else "within noise"
    bound = _T975[min(n - 1, len(_T975)) - 1] * std / math.sqrt(n)
    if mean > bound:
        return "holds"
    if mean < -bound:
        return "reversed"
    return "within noise"


def _diff(mean: float, std: float) -> str:
    return f"{mean:+.4f}" if math.isnan(std) else f"{mean:+.4f} ± {std:.4f}"


def results_table(models: dict[str, Model]) -> list[str]:
    lines = [
        "| model | parameters | runs | test ROC-AUC | test PR-AUC | best epoch (mean) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for m in models.values():
        best = np.mean([run["best_epoch"] for run in m.runs])
        lines.append(
            f"| {m.name} | {m.runs[0]['parameters'] / 1e6:.2f} M | {len(m.runs)} | "
            f"{_pm(m.values('test', 'roc_auc'))} | {_pm(m.values('test', 'pr_auc'))} | "
            f"{best:.1f} |"
        )
    return lines


def timing_table(
    schedules: dict[str, dict[str, Model]], train_windows: int
) -> tuple[list[str], dict[str, float]]:
    """Median seconds per epoch over every epoch of every run (both schedules)."""
    names: list[str] = []
    for models in schedules.values():
        names += [n for n in models if n not in names]
    medians: dict[str, float] = {}
    lines = [
        "| model | window (samples) | epochs timed | training s/epoch | + validation = s/epoch "
        "| training ms/window |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name in names:
        ms = [models[name] for models in schedules.values() if name in models]
        train = np.concatenate([m.seconds("train_seconds") for m in ms])
        total = np.concatenate([m.seconds("seconds") for m in ms])
        medians[name] = float(np.median(total))
        medians[name + ":train"] = float(np.median(train))
        lines.append(
            f"| {name} | {ms[0].runs[0]['window_samples']:,} | {len(train)} | "
            f"{np.median(train):.1f} | {np.median(total):.1f} | "
            f"{1000 * np.median(train) / train_windows:.0f} |"
        )
    return lines, medians


def plot(schedules: dict[str, dict[str, Model]], path: Path) -> None:
    """Validation PR-AUC per epoch, one panel per schedule: mean over seeds, min-max shaded."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    figure = Figure(figsize=(11, 4.2), dpi=110)
    panels = figure.subplots(1, len(schedules), sharey=True, squeeze=False)[0]
    names = list(dict.fromkeys(n for models in schedules.values() for n in models))
    colors = {name: f"C{i}" for i, name in enumerate(names)}  # one colour per model throughout
    handles = {}
    for axes, (schedule, models) in zip(panels, schedules.items(), strict=True):
        for m in models.values():
            curves = m.curves()
            epochs = np.arange(1, curves.shape[1] + 1)
            style = "--" if m.name in EXTENSIONS else "-"
            color = colors[m.name]
            (handles[m.name],) = axes.plot(
                epochs, curves.mean(axis=0), style, color=color, marker="o", ms=3, label=m.name
            )
            axes.fill_between(
                epochs, curves.min(axis=0), curves.max(axis=0), color=color, alpha=0.12
            )
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        counts = sorted({len(m.runs) for m in models.values()})
        seeds = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}–{counts[-1]}"
        axes.set_title(f"{schedule} schedule ({curves.shape[1]} epochs, {seeds} seeds per model)")
        axes.set_xlabel("epoch")
        axes.grid(alpha=0.3)
    panels[0].set_ylabel("validation PR-AUC (macro)")
    figure.legend(
        [handles[n] for n in names], names, loc="lower center", ncol=len(names), fontsize=8
    )
    figure.tight_layout(rect=(0, 0.07, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)


def benchmark_epochs(
    timing: dict[str, Any], train_windows: int, valid_windows: int
) -> dict[str, tuple[float, float, float]]:
    """From `timing.json`: per model (train ms/window, eval ms/window, s/epoch extrapolated to
    `train_windows` training and `valid_windows` validation windows), medians over rounds."""
    out = {}
    for name, t in timing["ms_per_window"].items():
        train, evaluate = float(np.median(t["train"])), float(np.median(t["eval"]))
        out[name] = (train, evaluate, (train * train_windows + evaluate * valid_windows) / 1000)
    return out


def claims(
    schedules: dict[str, dict[str, Model]],
    medians: dict[str, float],
    bench: dict[str, tuple[float, float, float]] | None = None,
) -> list[str]:
    """One row per claim of the paper and schedule, with the measured paired differences."""
    lines = [
        "| claim (paper, MTAT) | schedule | measured here: Q2L minus baseline, mean ± std over "
        "seeds (seeds Q2L wins) | verdict |",
        "|---|---|---|---|",
    ]
    for schedule, models in schedules.items():
        if Q2L not in models:
            continue
        for base in BASELINES:
            if base not in models:
                continue
            cells = []
            verdicts = []
            for metric, label in (("roc_auc", "ROC-AUC"), ("pr_auc", "PR-AUC")):
                mean, std, n, wins = paired_difference(models[Q2L], models[base], metric)
                cells.append(f"{label} {_diff(mean, std)} ({wins}/{n})")
                verdicts.append(verdict(mean, std, n))
            final = verdicts[0] if verdicts[0] == verdicts[1] else " / ".join(verdicts)
            lines.append(
                f"| Q2L beats {base} in ROC-AUC and PR-AUC | {schedule} | {'; '.join(cells)} | "
                f"{final} |"
            )
    if "long" in schedules and Q2L in schedules["long"] and "rescnn" in schedules["long"]:
        q, r = schedules["long"][Q2L].curves(), schedules["long"]["rescnn"].curves()
        early = ", ".join(
            f"epoch {e + 1}: {q[:, e].mean():.3f} vs {r[:, e].mean():.3f}" for e in range(2)
        )
        faster = bool((q[:, :2].mean(axis=0) > r[:, :2].mean(axis=0)).all())
        lines.append(
            f"| Q2L converges faster than ResCNN | long | validation PR-AUC, Q2L vs ResCNN, "
            f"{early} | {'holds' if faster else 'does not hold'} |"
        )
    paper = 100 * (PAPER_SECONDS[Q2L] / PAPER_SECONDS["rescnn"] - 1)
    if bench and Q2L in bench and "rescnn" in bench:
        ours = 100 * (bench[Q2L][2] / bench["rescnn"][2] - 1)
        ours_train = 100 * (bench[Q2L][0] / bench["rescnn"][0] - 1)
        lines.append(
            f"| Q2L costs about {paper:.0f} % more time per epoch than ResCNN | benchmark | "
            f"{ours:+.0f} % per epoch with validation, {ours_train:+.0f} % training only "
            f"(interleaved benchmark; CPU, 1/8 widths) | "
            f"{'holds' if abs(ours - paper) <= 10 else 'differs'} |"
        )
    if Q2L in medians and "rescnn" in medians:
        ours = 100 * (medians[Q2L] / medians["rescnn"] - 1)
        lines.append(
            f"| (same, from the runs' logs) | both | {ours:+.0f} % (median logged epoch with "
            "validation; depends on the load while each ran) | see the benchmark |"
        )
    return lines


def extensions(schedules: dict[str, dict[str, Model]]) -> tuple[list[str], dict[str, bool]]:
    """Paired comparison of each change beyond the paper with the paper's Q2L, and whether it
    wins: a higher mean test ROC-AUC and PR-AUC on every schedule."""
    lines = [
        "| change | schedule | minus Q2L: ROC-AUC | PR-AUC | seeds it wins (PR-AUC) | "
        "verdict (PR-AUC) |",
        "|---|---|---:|---:|---:|---|",
    ]
    wins: dict[str, bool] = {}
    for name, change in EXTENSIONS.items():
        for schedule, models in schedules.items():
            if Q2L not in models or name not in models:
                continue
            roc = paired_difference(models[name], models[Q2L], "roc_auc")
            pr = paired_difference(models[name], models[Q2L], "pr_auc")
            wins[name] = wins.get(name, True) and roc[0] > 0 and pr[0] > 0
            lines.append(
                f"| {change} (`{name}`) | {schedule} | {_diff(roc[0], roc[1])} | "
                f"{_diff(pr[0], pr[1])} | {pr[3]}/{pr[2]} | {verdict(pr[0], pr[1], pr[2])} |"
            )
    return lines, wins


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    gather = commands.add_parser("collect", help="run directories -> per-run result files")
    gather.add_argument("--runs", type=Path, required=True, help="a compare --out folder")
    gather.add_argument("--schedule", required=True, help="name of the schedule, e.g. short")
    gather.add_argument("--results", type=Path, default=DEFAULT_RESULTS)
    timer = commands.add_parser("time", help="interleaved cost per window of each model")
    timer.add_argument("--config", type=Path, required=True, help="the comparison's config")
    timer.add_argument("--models", required=True, help="comma-separated presets")
    timer.add_argument("--data", type=Path, required=True, help="the prepared dataset")
    timer.add_argument("--rounds", type=int, default=5)
    timer.add_argument("--results", type=Path, default=DEFAULT_RESULTS)
    report = commands.add_parser("report", help="result files -> docs/results.md and plot")
    report.add_argument("--results", type=Path, default=DEFAULT_RESULTS)
    report.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    report.add_argument("--plot", type=Path, default=DEFAULT_PLOT)
    args = parser.parse_args(argv)
    if args.command == "collect":
        written = collect(args.runs, args.schedule, args.results)
        print(f"{len(written)} result files in {args.results / args.schedule}")
        return 0
    if args.command == "time":
        torch.set_flush_denormal(True)
        names = [n.strip() for n in args.models.split(",") if n.strip()]
        data = PreparedDataset.open(args.data)
        timings = time_models(args.config, names, data.n_classes, rounds=args.rounds)
        record = {
            "date": dt.date.today().isoformat(),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "ms_per_window": timings,
        }
        args.results.mkdir(parents=True, exist_ok=True)
        (args.results / "timing.json").write_text(json.dumps(record, indent=1) + "\n")
        for name, t in timings.items():
            print(
                f"{name}: train {np.median(t['train']):.1f} ms/window, "
                f"eval {np.median(t['eval']):.1f} ms/window"
            )
        return 0
    from training.results_doc import render  # the prose lives apart from the numbers

    schedules = load(args.results)
    plot(schedules, args.plot)
    text = render(schedules, args.results, args.output, args.plot)
    args.output.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
