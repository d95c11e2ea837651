"""Training settings: defaults = the paper's recipe, config files, overrides, schedules."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from training.cli.common import parse_sets
from training.config import (
    WON_STAGES,
    ConfigError,
    Stage,
    TrainConfig,
    config_from_dict,
    make_config,
    read_config_file,
    stage_index,
)
from training.train import make_optimizer, make_scheduler


def test_defaults_are_the_papers_recipe() -> None:
    config = TrainConfig()
    assert (config.batch_size, config.lr, config.weight_decay, config.warmup) == (
        16,
        1e-4,
        1e-4,
        0.2,
    )
    assert config.schedule == "onecycle"
    assert config.epochs == 20
    assert config.eval_crops == 16
    assert config.select_by == "pr_auc"
    assert [(s.epochs, s.optimizer, s.lr) for s in WON_STAGES] == [
        (80, "adam", 1e-4),
        (20, "sgd", 1e-3),
        (20, "sgd", 1e-4),
        (80, "sgd", 1e-5),
    ]
    assert make_config({"schedule": "won"}).total_epochs == 200


def test_toml_and_json_files_give_the_same_config(tmp_path: Path) -> None:
    toml = tmp_path / "run.toml"
    toml.write_text(
        'preset = "rescnn"\nepochs = 3\nlr = 2e-4\nselect_by = "loss"\n'
        "[model]\nchannels = [8, 8, 8, 8, 8, 8, 16]\n"
        '[[stages]]\nepochs = 2\noptimizer = "adam"\nlr = 1e-4\n'
    )
    as_json = tmp_path / "run.json"
    as_json.write_text(json.dumps(read_config_file(toml)))
    config = make_config(read_config_file(toml))
    assert config == make_config(read_config_file(as_json))
    assert config.preset == "rescnn"
    assert config.lr == 2e-4
    assert config.select_by == "loss"
    assert config.stages == (Stage(2, "adam", 1e-4),)
    assert config.model == {"channels": [8, 8, 8, 8, 8, 8, 16]}
    # Later layers win; model tables merge key by key.
    later = make_config(read_config_file(toml), {"epochs": 5, "model": {"dropout": 0.1}})
    assert later.epochs == 5
    assert later.model == {"channels": [8, 8, 8, 8, 8, 8, 16], "dropout": 0.1}
    # The saved form round-trips through JSON.
    assert config_from_dict(json.loads(json.dumps(config.to_dict()))) == config


@pytest.mark.parametrize(
    ("layer", "message"),
    [
        ({"epoch": 3}, "unknown training settings: epoch"),
        ({"lr": "fast"}, "lr must be a number"),
        ({"batch_size": 16.5}, "batch_size must be an integer"),
        ({"schedule": "cosine"}, "schedule must be one of 'onecycle', 'won'"),
        ({"stages": [{"epochs": 1, "optimizer": "rmsprop", "lr": 1}]}, "optimizer must be one of"),
        ({"stages": [{"epochs": 0, "optimizer": "sgd", "lr": 1}]}, "positive number of epochs"),
        ({"warmup": 1.5}, r"warmup must be a fraction in \(0, 1\)"),
        ({"model": {"n_classes": 10}}, "set from the dataset's vocabulary"),
        ({"progress": "yes"}, "progress must be true or false"),
    ],
)
def test_bad_settings_are_named(layer: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make_config(layer)


def test_config_file_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("epochs = = 3\n")
    with pytest.raises(ConfigError, match="is not valid toml"):
        read_config_file(bad)
    (tmp_path / "x.yaml").write_text("a: 1\n")
    with pytest.raises(ConfigError, match=r"must end in \.toml or \.json"):
        read_config_file(tmp_path / "x.yaml")
    with pytest.raises(ConfigError, match="cannot read config file"):
        read_config_file(tmp_path / "absent.toml")


def test_command_line_set_values() -> None:
    assert parse_sets(["epochs=3", "model.d_model=16", "model.backbone_channels=[8,16]"]) == {
        "epochs": 3,
        "model": {"d_model": 16, "backbone_channels": [8, 16]},
    }
    assert parse_sets(["precision=bf16"]) == {"precision": "bf16"}  # not JSON: a string
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_sets(["epochs"])


def test_won_stage_boundaries() -> None:
    stages = (Stage(2, "adam", 1e-4), Stage(1, "sgd", 1e-3), Stage(2, "sgd", 1e-5))
    assert [stage_index(stages, epoch) for epoch in range(7)] == [0, 0, 1, 2, 2, 2, 2]


def test_one_cycle_warms_up_for_20_percent_then_anneals() -> None:
    config = make_config({"epochs": 5})
    model = nn.Linear(2, 2)
    optimizer = make_optimizer(config, model, 0)
    assert isinstance(optimizer, torch.optim.Adam)
    assert optimizer.param_groups[0]["weight_decay"] == 1e-4
    scheduler = make_scheduler(config, optimizer, steps_per_epoch=20)
    assert scheduler is not None
    rates = []
    for _ in range(100):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    peak = max(range(100), key=rates.__getitem__)
    assert peak == 20 - 1
    assert rates[peak] == pytest.approx(1e-4)
    assert rates[0] == pytest.approx(1e-4 / 25)
    assert rates[-1] < 1e-7


def test_won_optimizers() -> None:
    config = make_config({"schedule": "won"})
    model = nn.Linear(2, 2)
    assert isinstance(make_optimizer(config, model, 0), torch.optim.Adam)
    sgd = make_optimizer(config, model, 1)
    assert isinstance(sgd, torch.optim.SGD)
    group = sgd.param_groups[0]
    assert (group["lr"], group["momentum"], group["nesterov"], group["weight_decay"]) == (
        1e-3,
        0.9,
        True,
        1e-4,
    )
    assert make_scheduler(config, sgd, 10) is None


@pytest.mark.parametrize("steps", [2, 3, 5])
def test_one_cycle_on_very_few_steps(steps: int) -> None:
    """A tiny dataset must not crash OneCycleLR (a zero-length warm-up divides by zero)."""
    config = make_config({"epochs": 1})
    optimizer = make_optimizer(config, nn.Linear(2, 2), 0)
    scheduler = make_scheduler(config, optimizer, steps_per_epoch=steps)
    if steps < 3:
        assert scheduler is None  # constant learning rate
        return
    assert scheduler is not None
    rates = []
    for _ in range(steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates[0] == pytest.approx(1e-4 / 25)
    assert max(rates) <= 1e-4 * (1 + 1e-9)
