"""Which tags go into a library (app/library/choice.py) and the AcousticBrainz-era fields
(app/library/acousticbrainz.py), from stated scores."""

from __future__ import annotations

import pytest

from app.library.acousticbrainz import LEFT_OUT, acousticbrainz_fields, rescaled
from app.library.choice import ChoiceError, ChoiceSettings, Chooser
from model.tags import MTAT_TAGS, TWO_VOCABULARY_TAGS, Tag
from tests.app.library.conftest import MODEL_ID, stated_choice

IDS = [tag.id for tag in TWO_VOCABULARY_TAGS]


def scores_of(**named: float) -> list[float]:
    """Scores of the two-vocabulary model: `msd_happy=0.4` sets msd/happy, others 0.01."""
    given = {name.replace("_", "/", 1).replace("_", " "): value for name, value in named.items()}
    return [given.get(tag_id, 0.01) for tag_id in IDS]


def test_tags_passing_their_threshold_by_category_best_first_one_per_synonym_group() -> None:
    choice = stated_choice()
    assert choice.genres == ("rock", "electronic")  # mtt/rock and msd/rock are one group
    assert choice.moods == ("happy", "chill")  # chillout (0.58) named by its group, chill
    assert choice.values["instrument"] == ("guitar",)
    assert choice.values["vocal"] == ()
    assert choice.tags == ("mtt/rock", "mtt/guitar", "msd/happy", "msd/chillout", "msd/electronic")


def test_top_k_threshold_and_taxonomy_narrow_the_choice() -> None:
    assert stated_choice(top_k=1).genres == ("rock",)
    assert stated_choice(threshold=0.6).genres == ("rock",)
    assert stated_choice(threshold=0.6).moods == ("happy",)
    msd = stated_choice(taxonomy="msd")
    assert msd.tags == ("msd/rock", "msd/happy", "msd/chillout", "msd/electronic")
    assert set(msd.scores) == {tag_id for tag_id in IDS if tag_id.startswith("msd/")}


def test_the_digest_names_the_model_and_every_setting() -> None:
    digests = {
        stated_choice().digest,
        stated_choice(top_k=2).digest,
        stated_choice(threshold=0.4).digest,
        stated_choice(taxonomy="mtt").digest,
        stated_choice("replace").digest,
    }
    assert len(digests) == 5
    assert stated_choice().digest == stated_choice().digest
    other_model = Chooser(
        "q2l-small@ffffffffffff", TWO_VOCABULARY_TAGS, (0.5,) * 100, ChoiceSettings()
    )
    assert other_model.digest != stated_choice().digest


def test_bad_settings_are_refused_with_a_reason() -> None:
    with pytest.raises(ChoiceError, match="unknown taxonomy 'jamendo'"):
        Chooser(MODEL_ID, TWO_VOCABULARY_TAGS, (0.5,) * 100, ChoiceSettings(taxonomy="jamendo"))
    with pytest.raises(ChoiceError, match="top-k"):
        Chooser(MODEL_ID, TWO_VOCABULARY_TAGS, (0.5,) * 100, ChoiceSettings(top_k=0))
    with pytest.raises(ChoiceError, match="threshold"):
        Chooser(MODEL_ID, TWO_VOCABULARY_TAGS, (0.5,) * 100, ChoiceSettings(threshold=2.0))


def test_rescaling_puts_the_threshold_on_one_half() -> None:
    assert rescaled(0.3, 0.3) == 0.5
    assert rescaled(0.15, 0.3) == 0.25
    assert rescaled(0.65, 0.3) == 0.75
    assert rescaled(0.0, 0.3) == 0.0
    assert rescaled(1.0, 0.3) == 1.0


def test_acousticbrainz_fields_from_our_tags() -> None:
    thresholds = [0.3] * 100
    fields = acousticbrainz_fields(
        TWO_VOCABULARY_TAGS,
        thresholds,
        scores_of(msd_happy=0.65, msd_mellow=0.3, msd_chill=0.15, mtt_dance=0.0, msd_dance=0.15,
                  mtt_female_vocal=0.5, msd_female_vocalists=0.4, mtt_vocal=0.6),
    )  # fmt: skip
    assert fields["mood_happy"] == 0.75
    assert fields["mood_relaxed"] == 0.5  # the highest of chill, chillout, mellow
    assert fields["danceable"] == 0.25
    assert fields["mood_sad"] == round(0.5 * 0.01 / 0.3, 4)
    assert fields["voice_instrumental"] == "voice"
    assert fields["gender"] == "female"
    assert not set(fields) & set(LEFT_OUT)  # mood_aggressive and the rest: never invented


def test_voice_and_gender_are_left_out_unless_the_model_decides() -> None:
    thresholds = [0.3] * 100
    neither = acousticbrainz_fields(TWO_VOCABULARY_TAGS, thresholds, scores_of())
    assert "voice_instrumental" not in neither
    assert "gender" not in neither
    both = acousticbrainz_fields(
        TWO_VOCABULARY_TAGS, thresholds, scores_of(mtt_vocal=0.6, msd_instrumental=0.6)
    )
    assert "voice_instrumental" not in both
    instrumental = acousticbrainz_fields(
        TWO_VOCABULARY_TAGS, thresholds, scores_of(mtt_no_vocals=0.6)
    )
    assert instrumental["voice_instrumental"] == "instrumental"
    assert "gender" not in instrumental
    female_instrumental = acousticbrainz_fields(  # female is a voice tag: no decision
        TWO_VOCABULARY_TAGS, thresholds, scores_of(mtt_no_vocals=0.6, mtt_female=0.6)
    )
    assert "voice_instrumental" not in female_instrumental
    two_genders = acousticbrainz_fields(
        TWO_VOCABULARY_TAGS, thresholds, scores_of(mtt_female=0.6, mtt_male=0.6)
    )
    assert two_genders["voice_instrumental"] == "voice"
    assert "gender" not in two_genders


def test_a_model_without_msd_tags_fills_only_what_it_has() -> None:
    bare: tuple[Tag, ...] = MTAT_TAGS  # v1's vocabulary: bare names, no moods of Last.fm
    fields = acousticbrainz_fields(bare, [0.3] * 50, [0.01] * 50)
    assert set(fields) == {"mood_electronic", "danceable"}
