"""Resume after interruption: an interrupted-then-resumed run equals the uninterrupted one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.training.fakes import tiny_model_args
from training.cli import main
from training.run import read_log

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TIMING_COLUMNS = {"train_seconds", "val_seconds", "seconds"}
COMMON = ["--preset", "q2l-small", "--batch-size", "4", "--workers", "0", "--eval-crops", "4"]
COMMON += ["--no-progress", "--no-export", *tiny_model_args("q2l-small")]

# Won et al.'s schedule, shortened: 1 epoch of Adam, then SGD at 1e-3 and at 1e-4.
WON_SHORT = """
schedule = "won"
[[stages]]
epochs = 1
optimizer = "adam"
lr = 1e-4
[[stages]]
epochs = 1
optimizer = "sgd"
lr = 1e-3
[[stages]]
epochs = 1
optimizer = "sgd"
lr = 1e-4
"""


def _rows(run: Path) -> list[dict[str, str]]:
    return [
        {k: v for k, v in row.items() if k not in TIMING_COLUMNS}
        for row in read_log(run / "log.csv")
    ]


@pytest.mark.parametrize(
    ("schedule", "stop_after"),
    [("onecycle", 1), ("won", 2)],
)
def test_resume_matches_uninterrupted_run(
    small_prepared: Path, tmp_path: Path, schedule: str, stop_after: int
) -> None:
    extra = ["--epochs", "2"]
    if schedule == "won":
        config = tmp_path / "won.toml"
        config.write_text(WON_SHORT)
        extra = ["--config", str(config)]
    base = ["train", "--data", str(small_prepared), *COMMON, *extra]
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert main([*base, "--out", str(whole)]) == 0

    assert main([*base, "--out", str(parts), "--stop-after-epoch", str(stop_after)]) == 0
    assert len(read_log(parts / "log.csv")) == stop_after
    assert not (parts / "metrics.json").exists()  # not finished, nothing final yet
    assert main(["train", "--resume", str(parts), "--no-progress"]) == 0

    epochs = 2 if schedule == "onecycle" else 3
    assert len(_rows(parts)) == len(_rows(whole)) == epochs
    # Same crops, same shuffling, same dropout, same optimizer and schedule state: equal rows
    # (losses, metrics, learning rates, best flags), equal final weights and results.
    assert _rows(parts) == _rows(whole)
    assert (parts / "weights-rank0.sha256").read_text() == (
        whole / "weights-rank0.sha256"
    ).read_text()
    final_whole = json.loads((whole / "metrics.json").read_text())
    final_parts = json.loads((parts / "metrics.json").read_text())
    assert final_parts["valid"] == final_whole["valid"]
    assert final_parts["test"] == final_whole["test"]
    if schedule == "won":
        assert [row["stage"] for row in _rows(whole)] == ["1", "2", "3"]
        assert [float(row["lr"]) for row in _rows(whole)] == [1e-4, 1e-3, 1e-4]


def test_resume_refuses_changes_and_reuse(
    small_prepared: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    base = ["train", "--data", str(small_prepared), *COMMON, "--epochs", "3", "--out", str(run)]
    assert main([*base, "--stop-after-epoch", "1"]) == 0
    capsys.readouterr()
    assert main(base) == 2  # a fresh start must not overwrite a run
    assert f"continue it with --resume {run}" in capsys.readouterr().err
    assert main(["train", "--resume", str(run), "--lr", "0.1"]) == 2
    assert "cannot change lr when resuming" in capsys.readouterr().err
    assert main(["train", "--resume", str(tmp_path / "absent")]) == 2
    assert "not a run directory" in capsys.readouterr().err
    # Resuming may stop again; the epoch count is the saved one.
    assert main(["train", "--resume", str(run), "--stop-after-epoch", "2", "--no-progress"]) == 0
    assert len(read_log(run / "log.csv")) == 2
