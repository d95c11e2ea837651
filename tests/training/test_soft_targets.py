"""Soft (distillation) targets in the one trainer: the default model's recipe as a `train` run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from model.checkpoint import load_checkpoint
from model.tags import MTAT_TAG_NAMES
from tests.training.distill_fakes import N_TAGS, write_choice, write_source
from tests.training.fakes import tiny_model_args
from training.cli import main
from training.config import TrainConfig, make_config, read_config_file
from training.data.dataset import RandomCrops
from training.data.distilled import prepare_distilled
from training.data.store import DatasetError, DatasetWriter, PreparedDataset
from training.metrics import Metrics
from training.run import read_log
from training.train import _selection_value

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ROOT = Path(__file__).resolve().parents[2]
PRESET = ROOT / "training" / "experiments" / "default-model.toml"
WINDOW = 59049  # q2l-small's window: every window of the cache is one clip
GUITAR, PIANO = (MTAT_TAG_NAMES.index(t) for t in ("guitar", "piano"))


def _write_cache(root: Path) -> None:
    """Two sources per split, six windows each; guitar is a teacher positive in ten windows of
    every split (enough for the agreement), piano is a render's known truth in odd sources."""
    rng = np.random.default_rng(0)
    rows = []
    for n, split in enumerate(["train", "train", "valid", "valid", "test", "test"]):
        folder = root / f"src{n}"
        teacher = np.full((6, 50), 0.05, dtype=np.float32)
        teacher[:, GUITAR] = [0.9, 0.8, 0.7, 0.6, 0.5, 0.1]
        truth = np.full((6, N_TAGS), -1, dtype=np.int8)
        if n % 2:
            truth[:, PIANO] = [1, 1, 1, 0, 0, 0]
        pcm = rng.integers(-3000, 3000, size=(6, WINDOW), dtype=np.int16)
        write_source(folder, pcm, teacher, truth)
        kind = "render" if n % 2 else "music"
        rows.append(
            {"source_id": f"src{n}", "kind": kind, "path": f"{kind}/{n}.ogg", "split": split}
        )
    (root / "index.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    write_choice(root)


@pytest.fixture(scope="module")
def soft_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("soft")
    _write_cache(root / "cache")
    out = root / "data"
    args = ["prepare-distill", "--soft", "--cache", str(root / "cache"), "--out", str(out)]
    assert main(args) == 0
    return out


def test_soft_dataset_keeps_every_tag_and_the_teacher_probabilities(soft_data: Path) -> None:
    data = PreparedDataset.open(soft_data)
    assert data.n_classes == N_TAGS
    assert data.info["clips"] == {"train": 12, "valid": 12, "test": 12}
    assert data.info["source"]["targets"] == "soft"
    assert data.targets is not None
    assert data.targets.dtype == np.float32
    first = data.split_indices("train")[:6]  # src0, a music source: the teacher's scores
    assert data.targets[first, GUITAR].tolist() == pytest.approx([0.9, 0.8, 0.7, 0.6, 0.5, 0.1])
    assert data.labels[first, GUITAR].tolist() == [1, 1, 1, 1, 1, 0]  # teacher >= 0.3
    render = data.split_indices("train")[6:]  # src1: piano truth replaces the teacher's 0.05
    assert data.targets[render, PIANO].tolist() == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]
    crops = RandomCrops(data, data.split_indices("train"), WINDOW, seed=0, soft=True)
    assert crops[0][1][GUITAR].item() == pytest.approx(0.9)
    assert crops[0][1][PIANO].item() == pytest.approx(0.05)  # src0 is music: no piano truth


def test_hard_datasets_have_no_soft_targets(tmp_path: Path) -> None:
    _write_cache(tmp_path / "cache")
    data = prepare_distilled(tmp_path / "cache", tmp_path / "hard")
    assert data.targets is None
    assert data.tag_names == ("mtt/guitar",)  # the only tag with 10 positives in every split
    with pytest.raises(DatasetError, match="prepare-distill --soft"):
        RandomCrops(data, data.split_indices("train"), WINDOW, seed=0, soft=True)


def test_soft_targets_are_given_for_every_clip_or_none(tmp_path: Path) -> None:
    writer = DatasetWriter(tmp_path / "d", sample_rate=16000, dtype="int16", n_classes=2)
    labels = np.array([1, 0], dtype=np.uint8)
    writer.add("a", "a", np.zeros(10, np.float32), labels, "train", np.array([0.7, 0.2]))
    with pytest.raises(DatasetError, match="every clip or none"):
        writer.add("b", "b", np.zeros(10, np.float32), labels, "train")
    writer.abort()


def test_agreement_selects_when_it_is_measurable() -> None:
    config = TrainConfig(select_by="agreement")
    metrics = Metrics(roc_auc=0.9, pr_auc=0.8, n_clips=12, skipped=(), per_tag=(), loss=0.5)
    assert _selection_value(config, metrics, 0.75) == 0.75
    assert _selection_value(config, metrics, None) == -0.5  # no tag with 10 positives: the loss


def test_the_default_model_preset_is_the_old_distillation_recipe() -> None:
    config = make_config(read_config_file(PRESET))
    assert config.preset == "q2l-small"
    assert config.data == "data/distill-soft"
    assert (config.targets, config.select_by) == ("soft", "agreement")
    assert (config.epochs, config.batch_size, config.lr) == (6, 32, 3e-4)
    assert (config.weight_decay, config.warmup, config.schedule) == (1e-4, 0.2, "onecycle")
    assert (config.precision, config.cpu_autocast, config.eval_crops) == ("auto", True, 1)


def test_the_default_model_preset_trains_resumes_and_exports(
    soft_data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    tiny = ["--epochs", "2", "--batch-size", "4", "--precision", "fp32", "--no-progress"]
    args = ["train", "--config", str(PRESET), "--data", str(soft_data), "--out", str(out)]
    assert main([*args, *tiny, *tiny_model_args("q2l-small"), "--stop-after-epoch", "1"]) == 0
    assert len(read_log(out / "log.csv")) == 1
    assert not (out / "model.safetensors").exists()
    assert main(["train", "--resume", str(out), "--no-progress"]) == 0

    log = read_log(out / "log.csv")
    assert [row["epoch"] for row in log] == ["1", "2"]
    assert all(row["val_agreement"] != "" for row in log)
    best = [row for row in log if row["best"] == "1"][-1]
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["selected_by"] == "agreement"
    assert summary["targets"] == "soft"
    assert summary["best_epoch"] == int(best["epoch"])
    assert summary["protocol"].startswith("one crop per clip")
    assert summary["valid_agreement_roc_auc"] == pytest.approx(float(best["val_agreement"]))

    checkpoint = load_checkpoint(out / "model.safetensors")
    metadata = checkpoint.metadata
    assert metadata.preset == "q2l-small"
    assert len(metadata.thresholds) == N_TAGS
    assert [tag.id for tag in metadata.tags][:2] == ["mtt/guitar", "mtt/classical"]
    assert [tag.id for tag in metadata.tags][50:52] == ["msd/rock", "msd/pop"]
    # No MSD teacher positive anywhere: too rare to calibrate, the tag keeps teacher >= 0.3.
    assert metadata.thresholds[50] == pytest.approx(0.3)
    assert "msd/rock" in metadata.provenance["uncalibrated_tags"]
    provenance = metadata.provenance
    assert "MTT_musicnn" in provenance["teachers"]["mtt"]
    assert "MSD_musicnn" in provenance["teachers"]["msd"]
    assert "CC BY-NC-SA 3.0" in provenance["licence"]
    assert "Million Song Dataset" in provenance["licence"]
    assert provenance["recipe"]["targets"] == "soft"
    assert provenance["recipe"]["lr"] == 3e-4
    assert provenance["recipe"]["epochs"] == 2
    assert provenance["recipe"]["selected_by"] == "validation agreement"
    assert provenance["thresholds"].endswith("against teacher >= 0.3 or ground truth")
    assert provenance["metrics"]["valid_agreement_roc_auc"] == pytest.approx(
        summary["valid_agreement_roc_auc"]
    )
    assert provenance["metrics"]["valid_soft_bce"] > 0.0
