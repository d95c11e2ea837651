"""End to end on a fake MagnaTagATune in the real layout: prepare, train for an epoch, evaluate,
export; then the service loads the exported checkpoint and tags a file."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from starlette.testclient import TestClient

from model.audio.decode import decode_audio
from model.checkpoint import load_checkpoint
from model.inference import predict_track
from model.tags import MTAT_TAG_NAMES, MTAT_TAGS
from tests.training.fakes import USED_TAGS, FakeMtat, subset
from training.cli import main
from training.data.store import PreparedDataset
from training.run import LOG_FIELDS

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY_CONFIG = """
preset = "q2l-small"
epochs = 1
batch_size = 8
num_workers = 0

[model]  # a narrow q2l-small: the full width is too slow for a test suite on two cores
backbone_channels = [8, 8, 16, 16, 16]
d_model = 16
dim_feedforward = 32
mel = { n_mels = 32 }
"""


def test_prepare_keeps_the_folder_split(prepared: Path, fake_mtat: FakeMtat) -> None:
    data = PreparedDataset.open(prepared)
    # 16 folders × 3 clips: folders 0-b train, c valid, d-f test; minus the clip with only
    # filler tags (folder 0) and the empty mp3 (folder 5), which is skipped and reported.
    assert data.info["clips"] == {"train": 34, "valid": 3, "test": 9}
    assert data.info["skipped"][0]["path"] == str(fake_mtat.root / fake_mtat.broken)
    assert "Invalid data" in data.info["skipped"][0]["reason"]
    assert fake_mtat.untagged not in set(data.keys.tolist())
    assert data.tag_names == MTAT_TAG_NAMES
    for index, key in enumerate(data.keys):
        assert (
            str(key)[0]
            in {"train": "0123456789ab", "valid": "c", "test": "def"}[str(data.splits[index])]
        )
        np.testing.assert_array_equal(
            data.labels[index], fake_mtat.labels[fake_mtat.mp3_paths.index(str(key))]
        )
    assert data.info["source"]["licence"].startswith("MagnaTagATune")
    assert int(data.lengths.min()) == 5 * 16000


def test_train_evaluate_export_serve(
    prepared: Path, fake_mtat: FakeMtat, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "tiny.toml"
    config.write_text(TINY_CONFIG)
    run = tmp_path / "run"
    args = ["train", "--config", str(config), "--data", str(prepared), "--out", str(run)]
    assert main([*args, "--no-progress"]) == 0
    assert "model exported to" in capsys.readouterr().out

    # One epoch logged with every column; the numbers are real numbers.
    with (run / "log.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 1
    assert tuple(rows[0]) == LOG_FIELDS
    for column in ("train_loss", "val_loss", "val_roc_auc", "val_pr_auc", "seconds"):
        assert np.isfinite(float(rows[0][column]))
    assert float(rows[0]["seconds"]) >= float(rows[0]["train_seconds"]) > 0

    final = json.loads((run / "metrics.json").read_text())
    assert final["complete"]
    assert final["best_epoch"] == 1
    assert final["valid"]["n_clips"] == 3
    assert final["test"]["n_clips"] == 9
    unused = set(MTAT_TAG_NAMES) - set(USED_TAGS)
    assert unused <= set(final["test"]["skipped_tags"])  # listed, not crashed on
    assert len((run / "test_per_tag.csv").read_text().splitlines()) == 51

    # evaluate: the exported checkpoint scores exactly as the run's own final evaluation.
    report = tmp_path / "report"
    assert (
        main(
            [
                "evaluate",
                "--model",
                str(run / "model.safetensors"),
                "--data",
                str(prepared),
                "--split",
                "test",
                "--out",
                str(report),
                "--no-progress",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "| tag | positives | ROC-AUC | PR-AUC |" in printed
    assert "test: ROC-AUC" in printed
    evaluated = json.loads((report / "test_metrics.json").read_text())
    assert evaluated["pr_auc"] == pytest.approx(final["test"]["pr_auc"], abs=1e-6)
    assert evaluated["roc_auc"] == pytest.approx(final["test"]["roc_auc"], abs=1e-6)

    # export again from the run directory, to another file.
    exported = tmp_path / "exported.safetensors"
    assert main(["export", "--run", str(run), "--out", str(exported), "--no-progress"]) == 0
    checkpoint = load_checkpoint(exported)
    meta = checkpoint.metadata
    assert meta.preset == "q2l-small"
    assert meta.tags == MTAT_TAGS
    provenance = meta.provenance
    assert provenance["metrics"]["test"]["pr_auc"] == pytest.approx(final["test"]["pr_auc"])
    assert provenance["training_data"]["dataset"] == "MagnaTagATune"
    assert "non-commercial" in provenance["licence"]
    uncalibrated = set(provenance["uncalibrated_tags"])
    assert uncalibrated == set(final["uncalibrated_tags"])
    assert unused <= uncalibrated
    for tag, threshold in zip(meta.tags, meta.thresholds, strict=True):
        assert threshold == pytest.approx(final["thresholds"][tag.name])
        if tag.name in uncalibrated:
            assert threshold == 0.5
    assert any(t != 0.5 for t in meta.thresholds)  # calibrated on validation
    assert "/" not in provenance["training_data"]["annotations"]  # no machine paths

    # The model library tags a real mp3 with the exported checkpoint...
    mp3 = fake_mtat.root / fake_mtat.mp3_paths[-1]
    waveform = torch.from_numpy(decode_audio(mp3).samples)
    prediction = predict_track(checkpoint.model, waveform)
    assert prediction.track_scores.shape == (50,)
    assert 0.0 <= float(prediction.track_scores.min()) <= float(prediction.track_scores.max()) <= 1

    # ...and so does the service.
    _tag_with_service(exported, mp3)


def _tag_with_service(checkpoint: Path, audio: Path) -> None:
    from app.service.app import create_app
    from app.service.settings import Settings

    app = create_app(Settings(checkpoint=checkpoint, warmup=False, device="cpu"))
    with TestClient(app) as client:
        response = client.post(
            "/tag", files={"file": (audio.name, audio.read_bytes(), "application/octet-stream")}
        )
        assert response.status_code == 200, response.text
        body = response.json()
        names = [entry["tag"] for entry in body["tags"]]
        assert names
        assert set(names) <= set(MTAT_TAG_NAMES)


def test_full_width_preset_trains_and_loads(prepared: Path, tmp_path: Path) -> None:
    """The real q2l-small config (4.7 M parameters), one epoch on a handful of clips."""
    small = subset(prepared, tmp_path / "small", {"train": 4, "valid": 2, "test": 1})
    run = tmp_path / "run"
    args = ["train", "--preset", "q2l-small", "--data", str(small), "--out", str(run)]
    args += ["--epochs", "1", "--batch-size", "4", "--workers", "0", "--eval-crops", "2"]
    assert main([*args, "--no-progress"]) == 0
    checkpoint = load_checkpoint(run / "model.safetensors")
    assert list(checkpoint.metadata.config["backbone_channels"]) == [64, 64, 128, 128, 256]
    assert 4.6e6 < checkpoint.model.num_parameters() < 4.8e6
