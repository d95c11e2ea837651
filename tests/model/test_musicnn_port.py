"""The bundled MTT_musicnn weights reproduce the original TensorFlow model.

`tests/fixtures/musicnn_reference.npz` was recorded once with the original musicnn TensorFlow
code (float16 cast removed) by `scripts/record_musicnn_reference.py`; see its provenance field.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from model.checkpoint import load_checkpoint
from model.musicnn import Musicnn
from model.tags import MTAT_TAG_NAMES

ROOT = Path(__file__).resolve().parents[2]
WEIGHTS = ROOT / "model" / "weights" / "musicnn-mtt.safetensors"
FIXTURE = ROOT / "tests" / "fixtures" / "musicnn_reference.npz"


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(FIXTURE) as data:
        return {key: data[key] for key in data.files}


@pytest.fixture(scope="module")
def musicnn() -> Musicnn:
    model = load_checkpoint(WEIGHTS).model
    assert isinstance(model, Musicnn)
    return model


def test_labels_are_the_standard_mtat_order(reference: dict[str, np.ndarray]) -> None:
    assert tuple(reference["labels"]) == MTAT_TAG_NAMES


def test_network_matches_tensorflow_on_the_same_log_mel(
    musicnn: Musicnn, reference: dict[str, np.ndarray]
) -> None:
    with torch.no_grad():
        logits = musicnn.forward_log_mel(torch.from_numpy(reference["logmel"]))
    probabilities = torch.sigmoid(logits).numpy()
    assert np.abs(probabilities - reference["probabilities"]).max() < 1e-4


def test_front_end_matches_librosa(musicnn: Musicnn, reference: dict[str, np.ndarray]) -> None:
    with torch.no_grad():
        log_mel = musicnn.frontend.log_mel(torch.from_numpy(reference["audio"]))
    for index, (clip, frame) in enumerate(
        zip(reference["patch_clip"], reference["patch_frame"], strict=True)
    ):
        ours = log_mel[clip, :, frame : frame + 187].T.numpy()
        assert np.abs(ours - reference["logmel"][index]).max() < 1e-3


def test_waveform_to_scores_matches_tensorflow(
    musicnn: Musicnn, reference: dict[str, np.ndarray]
) -> None:
    with torch.no_grad():
        log_mel = musicnn.frontend.log_mel(torch.from_numpy(reference["audio"]))
        patches = torch.stack(
            [
                log_mel[clip, :, frame : frame + 187].T
                for clip, frame in zip(
                    reference["patch_clip"], reference["patch_frame"], strict=True
                )
            ]
        )
        probabilities = torch.sigmoid(musicnn.forward_log_mel(patches)).numpy()
    assert np.abs(probabilities - reference["probabilities"]).max() < 1e-4
