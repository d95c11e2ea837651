"""A track's evidence maps as both front ends give them out (app/pipeline/explain.py)."""

from __future__ import annotations

import base64

import pytest
import torch

from app.pipeline.explain import (
    SPECTROGRAM_ROWS,
    ExplainRequestError,
    choose_method,
    explain_track,
    resolve_tags,
)
from app.pipeline.vocabulary import Vocabulary
from model.explain import Explainer
from model.tags import MTAT_TAGS, TWO_VOCABULARY_TAGS
from model.zoo import build_model
from tests.app.audio import music

NAMES = [tag.name for tag in MTAT_TAGS]
MTT = Vocabulary(MTAT_TAGS)


@pytest.fixture(scope="module")
def explainer() -> Explainer:
    torch.manual_seed(0)
    return Explainer(build_model("q2l-small").eval())


def test_unknown_tags_are_refused_naming_the_valid_ones() -> None:
    with pytest.raises(ExplainRequestError) as error:
        resolve_tags(["piano", "kazoo"], MTT, (), max_tags=5)
    assert "'kazoo'" in str(error.value)
    assert "valid tags: guitar, classical, slow" in str(error.value)
    with pytest.raises(ExplainRequestError, match="at most 2"):
        resolve_tags(["piano", "flute", "cello"], MTT, (), max_tags=2)
    # Without names: the top tags, cut to the limit.
    assert resolve_tags([], MTT, ["piano", "flute", "cello"], max_tags=2) == [9, 25]


def test_two_vocabularies_take_ids_and_unambiguous_names() -> None:
    both = Vocabulary(TWO_VOCABULARY_TAGS)
    # msd/rock is the first MSD output (index 50), jazz only exists in MSD (its 10th tag).
    assert resolve_tags(["msd/rock", "jazz", "mtt/piano"], both, (), max_tags=5) == [50, 59, 9]
    with pytest.raises(
        ExplainRequestError, match="'rock' is ambiguous: it names mtt/rock, msd/rock"
    ):
        resolve_tags(["rock"], both, (), max_tags=5)
    assert resolve_tags(["rock"], both, (), max_tags=5, taxonomy="msd") == [50]
    with pytest.raises(ExplainRequestError, match=r"unknown taxonomy 'lastfm'; .* mtt, msd"):
        resolve_tags(["rock"], both, (), max_tags=5, taxonomy="lastfm")


def test_methods_default_to_gradient_and_hcnn_cannot_explain(explainer: Explainer) -> None:
    assert choose_method(explainer.model, None) == "gradient"
    assert choose_method(explainer.model, "attention") == "attention"
    with pytest.raises(ExplainRequestError, match="no label queries"):
        choose_method(build_model("rescnn"), "attention")
    with pytest.raises(ExplainRequestError, match="cannot be explained"):
        choose_method(build_model("hcnn"), None)


def test_a_track_gets_seconds_and_hz_axes(explainer: Explainer) -> None:
    samples = torch.from_numpy(music(10.0, 16000, 1)[:, 0])
    result = explain_track(explainer, samples, [9, 25], NAMES, "attention", max_columns=256)
    assert [m.tag for m in result.maps] == ["piano", "flute"]
    first = result.maps[0]
    # 59,049 samples / 8 tokens at 16 kHz; 10 s need 22 such steps.
    assert first.step_seconds == pytest.approx(0.4613, abs=1e-4)
    assert first.values.shape == (4, 22)
    assert first.band_edges_hz[0] == 0.0
    assert first.band_edges_hz[-1] == 8000.0
    for evidence in result.maps:
        assert float(evidence.values.max()) == pytest.approx(1.0)
        assert float(evidence.values.min()) >= 0.0
    spec = result.spectrogram
    assert spec.values.shape == (SPECTROGRAM_ROWS, 88)
    assert spec.values.dtype == torch.uint8
    assert len(base64.b64decode(spec.to_base64())) == SPECTROGRAM_ROWS * 88
    assert spec.step_seconds * 88 == pytest.approx(10.0)
    assert spec.db_max - spec.db_min == pytest.approx(80.0)
    assert result.window_scores.shape == (3, 50)


def test_long_tracks_are_bounded(explainer: Explainer) -> None:
    samples = torch.from_numpy(music(20.0, 16000, 1)[:, 0])  # 44 steps of 0.46 s
    result = explain_track(explainer, samples, [0], NAMES, "gradient", max_columns=10)
    evidence = result.maps[0]
    assert evidence.values.shape == (16, 9)  # 44 steps in groups of 5
    assert evidence.step_seconds == pytest.approx(5 * 0.4613, abs=1e-3)
    assert result.spectrogram.values.shape[1] == 4 * 9
