"""The four bundled musicnn teachers reproduce the original TensorFlow models; the vgg port.

`tests/fixtures/musicnn_reference.npz` was recorded once with the original musicnn TensorFlow
code (float16 cast removed) by `scripts/record_musicnn_reference.py`; see its provenance field.
It holds synthetic clips (chords, drums, a sweep), their float32 log-mel, and every model's
outputs on 187-frame patches and on 231-frame windows (the student's window length; for vgg,
the mean of TF's sigmoid over the 187-frame crops at frames 0 and 44).

Tolerance: sigmoid outputs within 1e-5 of TF's on the same log-mel (measured: at most 1.6e-6),
and within 1e-4 from the waveform, where our torchaudio front end replaces librosa's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from model.checkpoint import load_checkpoint
from model.config import config_from_dict, config_to_dict
from model.musicnn import Musicnn
from model.musicnn_vgg import MusicnnVgg, MusicnnVggConfig
from model.tags import MSD_TAG_NAMES, MTAT_TAG_NAMES
from model.zoo import build_model, config_for

ROOT = Path(__file__).resolve().parents[2]
WEIGHTS = ROOT / "model" / "weights"
FIXTURE = ROOT / "tests" / "fixtures" / "musicnn_reference.npz"

# TF checkpoint -> (our file, preset, vocabulary).
TEACHERS = {
    "MTT_musicnn": ("musicnn-mtt.safetensors", "musicnn", MTAT_TAG_NAMES),
    "MTT_vgg": ("musicnn-mtt-vgg.safetensors", "musicnn-vgg", MTAT_TAG_NAMES),
    "MSD_musicnn": ("musicnn-msd.safetensors", "musicnn", MSD_TAG_NAMES),
    "MSD_vgg": ("musicnn-msd-vgg.safetensors", "musicnn-vgg", MSD_TAG_NAMES),
}
ON_LOG_MEL = 1e-5
FROM_WAVEFORM = 1e-4


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(FIXTURE) as data:
        return {key: data[key] for key in data.files}


@pytest.fixture(scope="module", params=list(TEACHERS))
def teacher(request: pytest.FixtureRequest) -> tuple[str, Musicnn | MusicnnVgg]:
    name: str = request.param
    model = load_checkpoint(WEIGHTS / TEACHERS[name][0]).model
    assert isinstance(model, Musicnn | MusicnnVgg)
    return name, model


def _slices(reference: dict[str, np.ndarray], kind: str, frames: int) -> torch.Tensor:
    rows = zip(reference[f"{kind}_clip"], reference[f"{kind}_frame"], strict=True)
    return torch.from_numpy(
        np.stack([reference["clip_logmel"][clip, frame : frame + frames] for clip, frame in rows])
    )


def test_the_fixture_covers_every_teacher(reference: dict[str, np.ndarray]) -> None:
    assert reference["audio"].shape == (3, 112_000)
    assert len(reference["patch_clip"]) == 6
    assert len(reference["window_clip"]) == 3
    for name in TEACHERS:
        assert reference[f"{name}_probabilities"].shape == (6, 50)
        assert reference[f"{name}_window_probabilities"].shape == (3, 50)


def test_each_checkpoint_has_its_vocabulary_and_50_outputs(
    teacher: tuple[str, Musicnn | MusicnnVgg],
) -> None:
    name, model = teacher
    filename, preset, names = TEACHERS[name]
    metadata = load_checkpoint(WEIGHTS / filename).metadata
    assert metadata.preset == preset
    assert tuple(tag.name for tag in metadata.tags) == names
    assert model.n_classes == 50
    assert name in metadata.provenance["source"]
    assert "ISC" in metadata.provenance["licence"]


def test_labels_are_musicnns_own_order(reference: dict[str, np.ndarray]) -> None:
    assert tuple(reference["MTT_musicnn_labels"]) == MTAT_TAG_NAMES
    assert tuple(reference["MTT_vgg_labels"]) == MTAT_TAG_NAMES
    # musicnn spells a few MSD tags with capitals ("Hip-Hop", "Mellow", "House"); ours are lower.
    for key in ("MSD_musicnn_labels", "MSD_vgg_labels"):
        assert tuple(str(label).lower() for label in reference[key]) == MSD_TAG_NAMES
    assert "Hip-Hop" in tuple(reference["MSD_vgg_labels"])


def test_network_matches_tensorflow_on_3s_patches(
    teacher: tuple[str, Musicnn | MusicnnVgg], reference: dict[str, np.ndarray]
) -> None:
    name, model = teacher
    with torch.no_grad():
        logits = model.forward_log_mel(_slices(reference, "patch", 187))
    assert np.abs(logits.numpy() - reference[f"{name}_logits"]).max() < 1e-4
    probabilities = torch.sigmoid(logits).numpy()
    assert np.abs(probabilities - reference[f"{name}_probabilities"]).max() < ON_LOG_MEL


def test_network_matches_tensorflow_on_the_students_231_frame_windows(
    teacher: tuple[str, Musicnn | MusicnnVgg], reference: dict[str, np.ndarray]
) -> None:
    name, model = teacher
    with torch.no_grad():
        probabilities = torch.sigmoid(model.forward_log_mel(_slices(reference, "window", 231)))
    expected = reference[f"{name}_window_probabilities"]
    assert np.abs(probabilities.numpy() - expected).max() < ON_LOG_MEL


def test_the_teachers_disagree_where_they_should(reference: dict[str, np.ndarray]) -> None:
    # The drum clip: both MTT models put beat and drums on top, both MSD models electronic.
    drums = 3
    for name, tags in (("MTT_musicnn", MTAT_TAG_NAMES), ("MTT_vgg", MTAT_TAG_NAMES)):
        top = {tags[i] for i in np.argsort(-reference[f"{name}_probabilities"][drums])[:2]}
        assert top == {"beat", "drums"}
    for name in ("MSD_musicnn", "MSD_vgg"):
        assert MSD_TAG_NAMES[int(reference[f"{name}_probabilities"][drums].argmax())] == (
            "electronic"
        )


def test_front_end_matches_librosa(reference: dict[str, np.ndarray]) -> None:
    for filename in ("musicnn-mtt.safetensors", "musicnn-mtt-vgg.safetensors"):
        model = load_checkpoint(WEIGHTS / filename).model
        assert isinstance(model, Musicnn | MusicnnVgg)
        with torch.no_grad():
            log_mel = model.frontend.log_mel(torch.from_numpy(reference["audio"]))
        ours = log_mel.transpose(1, 2).numpy()  # (clips, frames, mels)
        assert ours.shape == reference["clip_logmel"].shape
        assert np.abs(ours - reference["clip_logmel"]).max() < 1e-3


def test_waveform_to_scores_matches_tensorflow(
    teacher: tuple[str, Musicnn | MusicnnVgg], reference: dict[str, np.ndarray]
) -> None:
    name, model = teacher
    # librosa's frames come from the whole clip, so ours do too (a window cut from the waveform
    # first would change its last frame, whose STFT reaches past the cut).
    with torch.no_grad():
        log_mel = model.frontend.log_mel(torch.from_numpy(reference["audio"])).transpose(1, 2)
        windows = torch.stack(
            [
                log_mel[clip, frame : frame + 231]
                for clip, frame in zip(
                    reference["window_clip"], reference["window_frame"], strict=True
                )
            ]
        )
        probabilities = torch.sigmoid(model.forward_log_mel(windows)).numpy()
    expected = reference[f"{name}_window_probabilities"]
    assert np.abs(probabilities - expected).max() < FROM_WAVEFORM


# The vgg architecture on its own: shapes, dtypes, crops, bad configurations.


def test_vgg_parameter_count_matches_the_tf_checkpoint() -> None:
    model = build_model("musicnn-vgg")
    running_stats = sum(
        buffer.numel()
        for name, buffer in model.named_buffers()
        if name.endswith(("running_mean", "running_var"))
    )
    # MTT_vgg and MSD_vgg hold 607,030 model values (36 variables), BN statistics included.
    assert model.num_parameters() + running_stats == 607_030


def test_vgg_pools_a_3s_patch_to_the_256_values_its_dense_layer_reads() -> None:
    config = MusicnnVggConfig()
    assert config.pooled_size == (2, 1)
    assert config.flat_features == 256
    assert config.audio.window_samples == 47_616
    assert config.mel.n_frames(config.audio.window_samples) == 187


@pytest.mark.parametrize(
    ("frames", "starts"),
    [(187, [0]), (188, [0, 1]), (231, [0, 44]), (374, [0, 187]), (375, [0, 94, 188])],
)
def test_vgg_crops_cover_every_frame_with_the_fewest_patches(
    frames: int, starts: list[int]
) -> None:
    model = build_model("musicnn-vgg")
    assert isinstance(model, MusicnnVgg)
    assert model.crop_starts(frames) == starts


def test_vgg_refuses_inputs_shorter_than_a_patch() -> None:
    model = build_model("musicnn-vgg").eval()
    assert isinstance(model, MusicnnVgg)
    with pytest.raises(ValueError, match="at least 187 frames"):
        model(torch.randn(1, 40_000))
    with pytest.raises(ValueError, match="expected 187-frame patches"):
        model.forward_patches(torch.randn(1, 231, 96))


@pytest.mark.parametrize("samples", [47_616, 59_049, 160_000])
def test_vgg_maps_any_long_enough_waveform_to_one_logit_per_tag(samples: int) -> None:
    model = build_model("musicnn-vgg").eval()
    with torch.no_grad():
        logits = model(torch.randn(2, samples))
    assert logits.shape == (2, 50)
    assert logits.dtype == torch.float32
    assert torch.isfinite(logits).all()


def test_vgg_runs_in_float64() -> None:
    model = build_model("musicnn-vgg").double().eval()
    with torch.no_grad():
        logits = model(torch.randn(1, 59_049, dtype=torch.float64))
    assert logits.dtype == torch.float64


def test_vgg_window_score_is_the_mean_probability_of_its_crops() -> None:
    model = build_model("musicnn-vgg").eval()
    assert isinstance(model, MusicnnVgg)
    log_mel = torch.rand(2, 231, 96) * 4
    with torch.no_grad():
        window = torch.sigmoid(model.forward_log_mel(log_mel))
        first = torch.sigmoid(model.forward_patches(log_mel[:, :187]))
        last = torch.sigmoid(model.forward_patches(log_mel[:, 44:]))
    torch.testing.assert_close(window, (first + last) / 2, rtol=0, atol=1e-6)


def test_vgg_window_logits_stay_finite_when_every_crop_is_certain() -> None:
    model = build_model("musicnn-vgg").eval()
    assert isinstance(model, MusicnnVgg)
    with torch.no_grad():
        model.dense.bias.fill_(40.0)
        model.dense.weight.zero_()
        logits = model.forward_log_mel(torch.rand(1, 231, 96))
    # sigmoid(40) is 1.0 in float32; a naive logit(mean) would be inf.
    torch.testing.assert_close(logits, torch.full((1, 50), 40.0), rtol=0, atol=1e-3)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"pool_time": (4, 2)}, "one entry per block"),
        ({"stride_freq": (2, 2, 0, 2, 4)}, "must be positive"),
        ({"filters": 0}, "filters must be positive"),
        ({"dropout": 1.0}, r"\[0, 1\)"),
        ({"patch_frames": 40}, "pool down to nothing"),
    ],
)
def test_bad_vgg_configurations_are_refused(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        config_for("musicnn-vgg", overrides)


def test_vgg_config_survives_a_checkpoint_round_trip() -> None:
    config = MusicnnVggConfig(n_classes=7, pool_freq=(1, 2, 2, 2, 2))
    assert config_from_dict(MusicnnVggConfig, config_to_dict(config)) == config
