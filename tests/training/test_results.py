"""`python -m training.results`: per-run result files, timing, and the docs/results.md report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.training.fakes import TINY_MODELS
from training.cli import main as training_main
from training.results import main, verdict

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# Test PR-AUC per seed: Q2L always ahead of ResCNN, always behind HCNN, level with Musicnn.
PR_AUC = {
    "q2l-base": [0.40, 0.42, 0.41],
    "rescnn": [0.30, 0.33, 0.31],
    "hcnn": [0.50, 0.53, 0.52],
    "musicnn": [0.45, 0.39, 0.41],
    "q2l-asl": [0.43, 0.44, 0.42],  # ahead of Q2L on every seed: wins
    "q2l-selfattn": [0.38, 0.43, 0.40],  # behind on average: does not
}


def _record(name: str, seed: int, schedule: str, epochs: int) -> dict[str, object]:
    pr = PR_AUC[name][seed] + (0.01 if schedule == "long" else 0.0)
    log = [
        {
            "epoch": e + 1,
            "train_loss": 0.5,
            "val_loss": 0.4,
            "val_roc_auc": 0.7,
            "val_pr_auc": pr * (e + 1) / epochs,
            "train_seconds": 10.0 if name.startswith("q2l") else 8.0,
            "val_seconds": 2.0,
            "seconds": 12.0 if name.startswith("q2l") else 10.0,
        }
        for e in range(epochs)
    ]
    preset = "q2l-base" if name.startswith("q2l-") else name
    return {
        "schedule": schedule,
        "name": name,
        "preset": preset,
        "seed": seed,
        "architecture": preset.split("-")[0],
        "parameters": 1000,
        "train": {
            "epochs": epochs,
            "batch_size": 16,
            "lr": 1e-3,
            "weight_decay": 1e-4,
            "warmup": 0.2,
            "loss": "asl" if name == "q2l-asl" else "bce",
        },
        "model_overrides": {"channels": [16, 32]},
        "window_samples": 59049,
        "best_epoch": epochs,
        "valid": {"roc_auc": 0.7, "pr_auc": pr, "loss": 0.4, "n_clips": 30},
        "test": {
            "roc_auc": 0.5 + pr,
            "pr_auc": pr,
            "loss": 0.4,
            "n_clips": 40,
            "n_tags_evaluated": 3,
        },
        "log": log,
    }


def _write_results(root: Path) -> None:
    for schedule, epochs in (("short", 2), ("long", 4)):
        for name in PR_AUC:
            for seed in range(3):
                path = root / schedule / f"{name}-seed-{seed}.json"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(_record(name, seed, schedule, epochs)))
    (root / "dataset.json").write_text(
        json.dumps(
            {
                "sample_rate": 16000,
                "tags": [
                    {"name": n, "category": "genre", "synonym_group": n}
                    for n in ("rock", "pop", "piano")
                ],
                "clips": {"train": 100, "valid": 30, "test": 40},
                "total_samples": 0,
                "source": {"threshold": 0.3, "min_positives": 10, "seed": 0},
                "cache_windows": {"train": 1000, "valid": 30, "test": 40},
            }
        )
    )
    (root / "timing.json").write_text(
        json.dumps(
            {
                "date": "2026-11-24",
                "threads": 1,
                "torch": "x",
                "ms_per_window": {
                    "q2l-base": {"train": [11.0, 12.0, 13.0], "eval": [4.0, 4.0, 4.0]},
                    "rescnn": {"train": [10.0, 10.0, 10.0], "eval": [4.0, 4.0, 4.0]},
                },
            }
        )
    )


def test_report_from_result_files(tmp_path: Path) -> None:
    _write_results(tmp_path / "results")
    output, plot = tmp_path / "docs" / "results.md", tmp_path / "docs" / "img" / "curves.png"
    args = ["report", "--results", str(tmp_path / "results")]
    assert main([*args, "--output", str(output), "--plot", str(plot)]) == 0
    text = output.read_text()
    short = text[text.index("### Short schedule") : text.index("### Long schedule")]
    q2l = np.array(PR_AUC["q2l-base"])
    assert f"| q2l-base | 0.00 M | 3 | {q2l.mean() + 0.5:.4f} ± {q2l.std(ddof=1):.4f} |" in short
    assert f"{q2l.mean():.4f} ± {q2l.std(ddof=1):.4f} | 2.0 |" in short
    claims = text[text.index("## The paper's claims") :]
    rows = {
        line.split(" | ")[0] + " " + line.split(" | ")[1]: line
        for line in claims.splitlines()
        if line.startswith("| Q2L beats")
    }
    assert rows["| Q2L beats rescnn in ROC-AUC and PR-AUC short"].endswith("| holds |")
    assert rows["| Q2L beats hcnn in ROC-AUC and PR-AUC long"].endswith("| reversed |")
    assert rows["| Q2L beats musicnn in ROC-AUC and PR-AUC short"].endswith("| within noise |")
    # Benchmark: (12 ms × 100 + 4 ms × 30) / (10 ms × 100 + 4 ms × 30) = 1.32 / 1.12 -> +18 %.
    assert "+18 % per epoch with validation, +20 % training only" in claims
    assert "**asymmetric loss: kept.**" in text
    assert "**decoder self-attention: not kept.** It does not win" in text
    assert "asymmetric loss (`q2l-asl`) beats the paper's Q2L on every schedule; decoder" in text
    assert "400 of" not in text
    assert "100 of 1,000 train" in text
    assert "![Validation PR-AUC per epoch, both schedules](img/curves.png)" in text
    png = plot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(png) > 10_000


def test_verdict_is_a_paired_t_test() -> None:
    assert verdict(0.05, 0.01, 3) == "holds"  # t = 8.7 > 4.30
    assert verdict(0.05, 0.03, 3) == "within noise"  # t = 2.9 < 4.30
    assert verdict(-0.05, 0.01, 3) == "reversed"
    assert verdict(0.01, float("nan"), 1) == "one seed only (ahead)"


def test_collect_and_time_a_compare_run(small_prepared: Path, tmp_path: Path) -> None:
    config = tmp_path / "compare.json"
    tiny = {name: TINY_MODELS[name] for name in ("q2l-base", "rescnn")}
    config.write_text(
        json.dumps(
            {
                "epochs": 1,
                "batch_size": 4,
                "num_workers": 0,
                "eval_crops": 1,
                "export": False,
                "overrides": tiny,
            }
        )
    )
    runs = tmp_path / "runs"
    args = ["compare", "--models", "q2l-base,rescnn", "--repeats", "1", "--no-progress"]
    args += ["--data", str(small_prepared), "--config", str(config), "--out", str(runs)]
    assert training_main(args) == 0
    results = tmp_path / "results"
    assert (
        main(["collect", "--runs", str(runs), "--schedule", "short", "--results", str(results)])
        == 0
    )
    record = json.loads((results / "short" / "rescnn-seed-0.json").read_text())
    final = json.loads((runs / "rescnn" / "seed-0" / "metrics.json").read_text())
    assert record["test"]["pr_auc"] == final["test"]["pr_auc"]
    assert record["model_overrides"]["channels"] == TINY_MODELS["rescnn"]["channels"]
    assert record["train"]["epochs"] == 1
    assert len(record["log"]) == 1
    assert record["log"][0]["train_seconds"] > 0
    dataset = json.loads((results / "dataset.json").read_text())
    assert dataset["clips"]["train"] == 8

    timing_args = ["time", "--config", str(config), "--models", "q2l-base,rescnn"]
    timing_args += ["--data", str(small_prepared), "--rounds", "1", "--results", str(results)]
    assert main(timing_args) == 0
    timing = json.loads((results / "timing.json").read_text())
    assert set(timing["ms_per_window"]) == {"q2l-base", "rescnn"}
    assert all(len(t["train"]) == 1 and t["train"][0] > 0 for t in timing["ms_per_window"].values())
