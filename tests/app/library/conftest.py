"""Fixtures of the library tests: one real-music file per format (tests/app/library/music.py),
and a choice of tags made from stated scores, for the file-tag tests that need no model."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from app.library.choice import Choice, ChoiceSettings, Chooser
from model.tags import TWO_VOCABULARY_TAGS
from tests.app.library.music import FORMATS, STYLES, make_file

MODEL_ID = "q2l-small@0123456789ab"
# Stated scores of a track: two genres, two moods (chillout and chill are one group), a guitar.
SCORES = {
    "mtt/rock": 0.91,
    "msd/rock": 0.80,
    "msd/happy": 0.64,
    "msd/chillout": 0.58,
    "msd/chill": 0.52,
    "mtt/guitar": 0.70,
    "msd/electronic": 0.55,
    "msd/jazz": 0.20,  # below its threshold
}


@pytest.fixture(scope="session")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """format -> an 8 s real-music file of that format (never modified: tests copy it)."""
    folder = tmp_path_factory.mktemp("pristine")
    return {
        fmt: make_file(folder, STYLES[i % len(STYLES)], fmt, 8.0) for i, fmt in enumerate(FORMATS)
    }


@pytest.fixture
def copies(tmp_path: Path, pristine: dict[str, Path]) -> dict[str, Path]:
    """Writable copies of the pristine files in this test's folder."""
    return {fmt: Path(shutil.copy2(path, tmp_path / path.name)) for fmt, path in pristine.items()}


def stated_choice(mode: str = "merge", **settings: object) -> Choice:
    ids = [tag.id for tag in TWO_VOCABULARY_TAGS]
    scores = [SCORES.get(tag_id, 0.01) for tag_id in ids]
    thresholds = tuple(0.5 for _ in ids)
    chooser = Chooser(
        MODEL_ID,
        TWO_VOCABULARY_TAGS,
        thresholds,
        ChoiceSettings(mode=mode, **settings),  # type: ignore[arg-type]
    )
    return chooser.choose(scores)
