"""Train several models with one recipe on one dataset, repeated with different seeds.

Reproduces the paper's comparison (Table 1: mean of 4 runs; Table 2: seconds per epoch; Figure 3:
validation PR-AUC per epoch). Every run is an ordinary run directory `<out>/<preset>/seed-<n>`:
finished runs are reused and interrupted ones resumed, so a long comparison can be restarted.

Besides presets, a comparison can hold variants: a name, the preset it builds on and the
training settings it changes (e.g. Q2L with the asymmetric loss), trained with the same seeds.

Outputs in `<out>`: `results.csv` and `results.md` (mean and standard deviation of the test
ROC-AUC and PR-AUC of each model's best-by-validation checkpoints, seconds per epoch) and
`val_pr_auc.png`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from model.zoo import preset_names
from training.config import ConfigError, TrainConfig, make_config
from training.distributed import DistEnv, barrier
from training.run import RunDir, read_log
from training.train import RunResult, train

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelSummary:
    """Aggregate over the repeats of one model."""

    preset: str
    runs: int
    parameters: int
    roc_auc: tuple[float, float]  # mean, sample standard deviation (nan for one run)
    pr_auc: tuple[float, float]
    seconds_per_epoch: float
    train_seconds_per_epoch: float
    val_pr_auc_curves: tuple[tuple[float, ...], ...]


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    array = np.asarray(values, dtype=np.float64)
    std = float(array.std(ddof=1)) if len(array) > 1 else float("nan")
    return float(array.mean()), std


def _float(text: str) -> float:
    return float(text) if text else float("nan")


def summarize(preset: str, run_dirs: Sequence[Path]) -> ModelSummary:
    """Read the finished runs of one model and aggregate them."""
    finals: list[dict[str, Any]] = []
    curves: list[tuple[float, ...]] = []
    seconds: list[float] = []
    train_seconds: list[float] = []
    for root in run_dirs:
        run = RunDir(root)
        final = json.loads(run.metrics.read_text())
        finals.append(final)
        rows = read_log(run.log)
        curves.append(tuple(_float(row["val_pr_auc"]) for row in rows))
        seconds += [float(row["seconds"]) for row in rows]
        train_seconds += [float(row["train_seconds"]) for row in rows]
    split = "test" if all(f.get("test") for f in finals) else "valid"
    if split == "valid":
        log.warning("%s: no test split, the table reports validation metrics", preset)
    return ModelSummary(
        preset=preset,
        runs=len(finals),
        parameters=int(finals[0]["parameters"]),
        roc_auc=_mean_std([_float_or_nan(f[split]["roc_auc"]) for f in finals]),
        pr_auc=_mean_std([_float_or_nan(f[split]["pr_auc"]) for f in finals]),
        seconds_per_epoch=float(np.mean(seconds)),
        train_seconds_per_epoch=float(np.mean(train_seconds)),
        val_pr_auc_curves=tuple(curves),
    )


def _float_or_nan(value: float | None) -> float:
    return float("nan") if value is None else float(value)


def _pm(pair: tuple[float, float]) -> str:
    mean, std = pair
    return f"{mean:.4f} ± {std:.4f}" if not np.isnan(std) else f"{mean:.4f}"


def results_markdown(summaries: Sequence[ModelSummary], reference: str | None = None) -> str:
    """The results table; seconds per epoch are also given relative to `reference` if present."""
    ref = next((s for s in summaries if s.preset == reference), None)
    lines = [
        "| model | parameters | runs | ROC-AUC | PR-AUC | s/epoch (train + val) | s/epoch (train) |"
        + (f" vs {reference} |" if ref else ""),
        "|---|---:|---:|---:|---:|---:|---:|" + ("---:|" if ref else ""),
    ]
    for s in summaries:
        line = (
            f"| {s.preset} | {s.parameters / 1e6:.2f} M | {s.runs} | {_pm(s.roc_auc)} | "
            f"{_pm(s.pr_auc)} | {s.seconds_per_epoch:.1f} | {s.train_seconds_per_epoch:.1f} |"
        )
        if ref:
            line += f" {100 * (s.seconds_per_epoch / ref.seconds_per_epoch - 1):+.0f} % |"
        lines.append(line)
    note = (
        "\nMean ± sample standard deviation over runs (seeds) of the test metrics of each run's "
        "best-by-validation checkpoint; seconds per epoch are means over all epochs of all runs.\n"
    )
    return "\n".join(lines) + "\n" + note


def results_csv(summaries: Sequence[ModelSummary]) -> str:
    header = (
        "model,parameters,runs,roc_auc_mean,roc_auc_std,pr_auc_mean,pr_auc_std,"
        "seconds_per_epoch,train_seconds_per_epoch\n"
    )
    rows = [
        f"{s.preset},{s.parameters},{s.runs},{s.roc_auc[0]:.6f},{s.roc_auc[1]:.6f},"
        f"{s.pr_auc[0]:.6f},{s.pr_auc[1]:.6f},{s.seconds_per_epoch:.3f},"
        f"{s.train_seconds_per_epoch:.3f}\n"
        for s in summaries
    ]
    return header + "".join(rows)


def plot_curves(summaries: Sequence[ModelSummary], path: Path) -> None:
    """Validation PR-AUC against epoch: each model's mean over runs, min-max band shaded."""
    # The object-oriented API renders straight to a file: no pyplot state, no GUI backend.
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    figure = Figure(figsize=(6.4, 4.0), dpi=120)
    axes = figure.subplots()
    for s in summaries:
        length = min(len(c) for c in s.val_pr_auc_curves)
        curves = np.array([c[:length] for c in s.val_pr_auc_curves], dtype=np.float64)
        epochs = np.arange(1, length + 1)
        (line,) = axes.plot(epochs, curves.mean(axis=0), marker="o", markersize=3, label=s.preset)
        if len(curves) > 1:
            axes.fill_between(
                epochs, curves.min(axis=0), curves.max(axis=0), color=line.get_color(), alpha=0.2
            )
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel("epoch")
    axes.set_ylabel("validation PR-AUC (macro)")
    axes.set_title("Validation PR-AUC per epoch (mean over runs, min-max shaded)")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path)


def resolve_entries(
    names: Sequence[str], variants: Mapping[str, Mapping[str, Any]] | None = None
) -> list[tuple[str, str, dict[str, Any]]]:
    """(name, preset, training-setting changes) for each compared model.

    Raises:
        ConfigError: a name that is neither a preset nor a variant, or a malformed variant.
    """
    variants = variants or {}
    entries = []
    for name in names:
        if name in variants:
            spec = dict(variants[name])
            preset = spec.pop("preset", None)
            if preset not in preset_names():
                raise ConfigError(
                    f"variant {name!r} needs preset = one of {', '.join(preset_names())}"
                )
            for field in ("preset", "out", "seed"):
                if field in spec:
                    raise ConfigError(f"variant {name!r} cannot set {field}")
            entries.append((name, str(preset), spec))
        elif name in preset_names():
            entries.append((name, name, {}))
        else:
            known = [*preset_names(), *variants]
            raise ConfigError(f"unknown models {name}; known: {', '.join(known)}")
    return entries


def compare(
    presets: Sequence[str],
    repeats: int,
    base: TrainConfig,
    out: str | Path,
    env: DistEnv,
    *,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    variants: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[ModelSummary]:
    """Train `repeats` seeds of every model with `base`'s recipe, then write the results.

    Args:
        presets: Names of presets or of `variants` to compare.
        base: The recipe; its `preset`, `out`, `seed` offset and `model` are set per run
            (seeds are `base.seed`, `base.seed + 1`, ...).
        overrides: Model-config overrides per preset (e.g. narrower models for a quick test);
            they apply to the variants built on that preset as well; presets not compared
            this time are ignored.
        variants: Per variant name, `preset` and the training settings it changes (its
            `model` table is applied after the preset's overrides).
    """
    if repeats <= 0:
        raise ConfigError(f"repeats must be positive, got {repeats}")
    out = Path(out)
    overrides = overrides or {}
    entries = resolve_entries(presets, variants)
    # One config file may serve comparisons of any subset of its models; a name that is no
    # preset at all is a typo, though.
    unknown = sorted(set(overrides) - set(preset_names()))
    if unknown:
        raise ConfigError(f"overrides for unknown presets: {', '.join(unknown)}")
    summaries = []
    for name, preset, changes in entries:
        run_dirs = []
        model = {**overrides.get(preset, {}), **changes.pop("model", {})}
        recipe = make_config(base.to_dict(), changes) if changes else base
        for repeat in range(repeats):
            seed = base.seed + repeat
            config = dataclasses.replace(
                recipe,
                preset=preset,
                seed=seed,
                out=str(out / name / f"seed-{seed}"),
                model=model,
                stop_after_epoch=None,
            )
            run = RunDir(config.out)
            if run.metrics.is_file():
                log.info("%s seed %d: finished earlier, reusing %s", name, seed, run.root)
            else:
                result: RunResult = train(config, env, resume=run.last.is_file())
                if not result.completed:  # pragma: no cover - stop_after_epoch is cleared above
                    raise RuntimeError(f"{run.root} did not complete")
            run_dirs.append(run.root)
        barrier(env)
        summaries.append(summarize(name, run_dirs))
    if env.is_main:
        reference = "rescnn" if "rescnn" in presets else None
        (out / "results.md").write_text(results_markdown(summaries, reference))
        (out / "results.csv").write_text(results_csv(summaries))
        plot_curves(summaries, out / "val_pr_auc.png")
        log.info("results in %s:\n%s", out, results_markdown(summaries, reference))
    barrier(env)
    return summaries
