"""Presets: parameter counts against the spec, output shapes and dtypes, bad configurations."""

from __future__ import annotations

import pytest
import torch

from model.config import AudioConfig, config_from_dict, config_to_dict
from model.hcnn import HarmonicCNNConfig
from model.musicnn import MusicnnConfig
from model.q2l import Q2LConfig, Query2Label
from model.rescnn import ResCNNConfig
from model.zoo import ARCHITECTURES, PRESETS, build_model, config_for, preset_config


def test_q2l_base_parameter_count_matches_the_paper_code() -> None:
    model = build_model("q2l-base")
    backbone = sum(
        p.numel()
        for name, p in model.named_parameters()
        if name.startswith(("frontend", "backbone", "dense."))
    )
    transformer = sum(
        p.numel() for name, p in model.named_parameters() if name.startswith(("encoder", "decoder"))
    )
    # model-spec.md §1.2: backbone 8,797,698; transformer 9,458,176; total about 18.57 M.
    assert backbone == 8_797_698
    assert transformer == 9_458_176
    assert model.num_parameters() == 18_569_780


def test_rescnn_parameter_count_matches_won_et_al() -> None:
    assert round(build_model("rescnn").num_parameters() / 1e6, 2) == 12.10


def test_musicnn_parameter_count_matches_mtt_musicnn() -> None:
    model = build_model("musicnn")
    running_stats = sum(
        buffer.numel()
        for name, buffer in model.named_buffers()
        if name.endswith(("running_mean", "running_var"))
    )
    # The MTT_musicnn TF checkpoint holds 792,079 model values (64 variables), BN moving
    # statistics included; training/teacher/musicnn_weights.py maps them one to one.
    assert model.num_parameters() + running_stats == 792_079


def test_q2l_small_is_a_narrow_q2l() -> None:
    model = build_model("q2l-small")
    assert 4e6 < model.num_parameters() < 5.5e6


@pytest.mark.parametrize("preset", list(PRESETS))
def test_every_preset_maps_one_window_to_one_logit_per_tag(preset: str) -> None:
    model = build_model(preset).eval()
    window = model.audio.window_samples
    logits = model(torch.randn(3, window))
    assert logits.shape == (3, 50)
    assert logits.dtype == torch.float32
    assert torch.isfinite(logits).all()


def test_models_run_in_float64() -> None:
    model = build_model("q2l-small").double().eval()
    logits = model(torch.randn(2, model.audio.window_samples, dtype=torch.float64))
    assert logits.dtype == torch.float64


def test_logits_are_not_probabilities() -> None:
    model = build_model("q2l-small").eval()
    assert isinstance(model, Query2Label)
    with torch.no_grad():
        model.classifier.bias.fill_(5.0)
        logits = model(torch.randn(1, model.audio.window_samples))
    assert (logits > 1.0).any()


def test_n_classes_override_for_own_vocabulary() -> None:
    config = config_for("q2l-small", {"n_classes": 7})
    model = build_model("q2l-small", config).eval()
    assert model(torch.randn(1, model.audio.window_samples)).shape == (1, 7)


@pytest.mark.parametrize(
    ("config_type", "kwargs"),
    [
        (Q2LConfig, {"d_model": 510, "n_heads": 4}),
        (Q2LConfig, {"d_model": 18, "n_heads": 3}),
        (Q2LConfig, {"n_classes": 0}),
        (Q2LConfig, {"backbone_channels": ()}),
        (Q2LConfig, {"dropout": 1.0}),
        (Q2LConfig, {"n_decoder_layers": 0}),
        (ResCNNConfig, {"channels": (128, -1)}),
        (HarmonicCNNConfig, {"bandwidth_q": 0.0}),
        (MusicnnConfig, {"timbral_heights": (1.5,)}),
        (AudioConfig, {"sample_rate": 0}),
    ],
)
def test_bad_configurations_are_refused(config_type: type, kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        config_type(**kwargs)


def test_unknown_preset_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="q2l-base"):
        build_model("q2l-huge")


def test_config_of_another_architecture_is_refused() -> None:
    with pytest.raises(ValueError, match="Q2LConfig"):
        build_model("q2l-small", ResCNNConfig())


@pytest.mark.parametrize("preset", list(PRESETS))
def test_configs_round_trip_through_plain_dicts(preset: str) -> None:
    config = preset_config(preset)
    config_type = ARCHITECTURES[PRESETS[preset][0]][0]
    assert config_from_dict(config_type, config_to_dict(config)) == config


def test_config_from_dict_rejects_unknown_keys() -> None:
    with pytest.raises(ValueError, match="unknown Q2LConfig keys: colour"):
        config_from_dict(Q2LConfig, {"colour": "blue"})
