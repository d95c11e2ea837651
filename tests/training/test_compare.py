"""`compare`: several models × seeds with one recipe -> table, seconds per epoch, PR-AUC plot."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.training.fakes import TINY_MODELS
from training.cli import main

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_compare_two_models_two_seeds(small_prepared: Path, tmp_path: Path) -> None:
    config = tmp_path / "compare.json"
    config.write_text(
        json.dumps(
            {
                "epochs": 2,
                "batch_size": 4,
                "num_workers": 0,
                "eval_crops": 2,
                "export": False,
                "overrides": {name: TINY_MODELS[name] for name in ("q2l-small", "rescnn")},
            }
        )
    )
    out = tmp_path / "compare"
    args = [
        "compare",
        "--models",
        "q2l-small,rescnn",
        "--repeats",
        "2",
        "--data",
        str(small_prepared),
    ]
    args += ["--out", str(out), "--config", str(config), "--no-progress"]
    assert main(args) == 0

    finals = {
        (preset, seed): json.loads((out / preset / f"seed-{seed}" / "metrics.json").read_text())
        for preset in ("q2l-small", "rescnn")
        for seed in (0, 1)
    }
    assert {final["best_epoch"] for final in finals.values()} <= {1, 2}
    lines = (out / "results.csv").read_text().splitlines()
    assert lines[0].startswith("model,parameters,runs,roc_auc_mean,roc_auc_std,pr_auc_mean")
    table = {line.split(",")[0]: line.split(",") for line in lines[1:]}
    assert set(table) == {"q2l-small", "rescnn"}
    for preset, row in table.items():
        pr = [finals[(preset, seed)]["test"]["pr_auc"] for seed in (0, 1)]
        roc = [finals[(preset, seed)]["test"]["roc_auc"] for seed in (0, 1)]
        assert int(row[2]) == 2
        assert float(row[3]) == pytest.approx(np.mean(roc), abs=1e-6)
        assert float(row[4]) == pytest.approx(np.std(roc, ddof=1), abs=1e-6)
        assert float(row[5]) == pytest.approx(np.mean(pr), abs=1e-6)
        assert float(row[6]) == pytest.approx(np.std(pr, ddof=1), abs=1e-6)
        assert float(row[7]) > 0
    markdown = (out / "results.md").read_text()
    assert "| q2l-small |" in markdown
    assert "vs rescnn" in markdown
    assert " ± " in markdown
    png = (out / "val_pr_auc.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(png) > 5000

    # Finished runs are reused, not retrained.
    stamp = (out / "rescnn" / "seed-1" / "metrics.json").stat().st_mtime_ns
    assert main(args) == 0
    assert (out / "rescnn" / "seed-1" / "metrics.json").stat().st_mtime_ns == stamp


def test_compare_rejects_unknown_models(small_prepared: Path, tmp_path: Path) -> None:
    args = ["compare", "--models", "q2l-base,resnet", "--data", str(small_prepared)]
    assert main([*args, "--out", str(tmp_path / "c")]) == 2


def test_compare_a_variant_with_changed_training_settings(
    small_prepared: Path, tmp_path: Path
) -> None:
    config = tmp_path / "compare.json"
    config.write_text(
        json.dumps(
            {
                "epochs": 1,
                "batch_size": 4,
                "num_workers": 0,
                "eval_crops": 1,
                "export": False,
                # hcnn is not compared this time: its overrides are ignored.
                "overrides": {name: TINY_MODELS[name] for name in ("q2l-small", "rescnn", "hcnn")},
                "variants": {
                    "q2l-sa": {
                        "preset": "q2l-small",
                        "lr": 3e-4,
                        "model": {"decoder_self_attention": True},
                    }
                },
            }
        )
    )
    out = tmp_path / "compare"
    args = ["compare", "--models", "rescnn,q2l-sa", "--repeats", "1"]
    args += ["--data", str(small_prepared), "--config", str(config), "--no-progress"]
    assert main([*args, "--out", str(out)]) == 0

    saved = json.loads((out / "q2l-sa" / "seed-0" / "config.json").read_text())
    assert saved["architecture"] == "q2l"
    assert saved["train"]["lr"] == 3e-4
    assert saved["model_config"]["decoder_self_attention"] is True
    # The preset's overrides apply to its variants, under the variant's own model changes.
    assert saved["model_config"]["d_model"] == TINY_MODELS["q2l-small"]["d_model"]
    rescnn = json.loads((out / "rescnn" / "seed-0" / "config.json").read_text())
    assert rescnn["train"]["lr"] == 1e-4
    rows = (out / "results.csv").read_text().splitlines()[1:]
    assert [row.split(",")[0] for row in rows] == ["rescnn", "q2l-sa"]


@pytest.mark.parametrize(
    ("variant", "message"),
    [
        ('preset = "resnet"', "needs preset"),
        ('preset = "rescnn"\nseed = 3', "cannot set seed"),
        ('preset = "rescnn"\nschedule = "fast"', "schedule must be one of"),
        ('preset = "rescnn"\n[overrides.resnet]\nchannels = [8]', "unknown presets: resnet"),
    ],
)
def test_compare_rejects_bad_variants(
    small_prepared: Path,
    tmp_path: Path,
    variant: str,
    message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = tmp_path / "compare.toml"
    config.write_text(f"[variants.v]\n{variant}\n")
    args = ["compare", "--models", "v", "--data", str(small_prepared), "--config", str(config)]
    assert main([*args, "--out", str(tmp_path / "c")]) == 2
    assert message in capsys.readouterr().err
