"""The four teachers of the default model and how their scores become its targets.

The `musicnn` wheel ships two architectures (musicnn, vgg) trained on two vocabularies: the 50
MagnaTagATune tags (`mtt`) and the 50 Last.fm tags of the Million Song Dataset (`msd`). The cache
keeps every teacher's scores separately (`teacher-<name>.npy`, (N, 50) each), so the choice of
teacher per vocabulary is made after labelling, on validation ground truth:

- per vocabulary, the mean of the musicnn and vgg probabilities if its macro ROC-AUC on the
  validation renders' ground truth beats the better single teacher's; otherwise that teacher;
- the student's (N, 100) targets are the chosen MTT scores followed by the chosen MSD scores, in
  `TWO_VOCABULARY_TAGS` order.

The choice is written to `<cache>/teachers.json` with the figures behind it, and every later
step (prepare, report) reads it from there.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from model.tags import MSD_TAGS, MTAT_TAGS, TWO_VOCABULARY_TAGS, Tag

WEIGHTS = Path(__file__).resolve().parents[2] / "model/weights"
VOCABULARY: tuple[Tag, ...] = TWO_VOCABULARY_TAGS
TAG_IDS: tuple[str, ...] = tuple(tag.id for tag in VOCABULARY)
TAXONOMY_TAGS: dict[str, tuple[Tag, ...]] = {"mtt": MTAT_TAGS, "msd": MSD_TAGS}
CHOICE_FILE = "teachers.json"


@dataclass(frozen=True)
class Teacher:
    """One published musicnn checkpoint, converted to our format.

    Attributes:
        name: File-name-safe id, also the cache's `teacher-<name>.npy`.
        taxonomy: The vocabulary it scores ("mtt" or "msd").
        weights: Its safetensors checkpoint.
        published_as: The checkpoint's name in the musicnn wheel.
    """

    name: str
    taxonomy: str
    weights: Path
    published_as: str

    @property
    def columns(self) -> slice:
        """Where its 50 scores sit in the student's 100 outputs."""
        start = TAXONOMIES.index(self.taxonomy) * 50
        return slice(start, start + 50)


TAXONOMIES: tuple[str, ...] = ("mtt", "msd")
TEACHERS: tuple[Teacher, ...] = (
    Teacher("mtt_musicnn", "mtt", WEIGHTS / "musicnn-mtt.safetensors", "MTT_musicnn"),
    Teacher("mtt_vgg", "mtt", WEIGHTS / "musicnn-mtt-vgg.safetensors", "MTT_vgg"),
    Teacher("msd_musicnn", "msd", WEIGHTS / "musicnn-msd.safetensors", "MSD_musicnn"),
    Teacher("msd_vgg", "msd", WEIGHTS / "musicnn-msd-vgg.safetensors", "MSD_vgg"),
)
TEACHER_BY_NAME = {teacher.name: teacher for teacher in TEACHERS}
MEAN = "mean"  # a choice: the mean of the taxonomy's two teachers


def teachers_of(taxonomy: str) -> tuple[Teacher, ...]:
    return tuple(teacher for teacher in TEACHERS if teacher.taxonomy == taxonomy)


def teacher_file(folder: Path, teacher: Teacher) -> Path:
    return folder / f"teacher-{teacher.name}.npy"


def taxonomy_scores(folder: Path, taxonomy: str, choice: str) -> np.ndarray:
    """(N, 50) scores of one vocabulary for one cached source: one teacher's, or the mean."""
    members = teachers_of(taxonomy)
    if choice == MEAN:
        return np.mean([np.load(teacher_file(folder, t)) for t in members], axis=0)
    [teacher] = [t for t in members if t.name == choice]
    return np.load(teacher_file(folder, teacher))


def combined_scores(folder: Path, choices: dict[str, str]) -> np.ndarray:
    """(N, 100) targets of one cached source under `choices` (taxonomy -> teacher or "mean")."""
    return np.concatenate(
        [taxonomy_scores(folder, taxonomy, choices[taxonomy]) for taxonomy in TAXONOMIES], axis=1
    ).astype(np.float32)


def needed_teachers(choices: dict[str, str]) -> list[str]:
    """The teachers whose scores `choices` combine (both of a vocabulary for its mean)."""
    return [
        teacher.name
        for taxonomy, choice in choices.items()
        for teacher in teachers_of(taxonomy)
        if choice in (MEAN, teacher.name)
    ]


def read_choice(cache: Path) -> dict[str, Any]:
    """The recorded choice (`{"choices": {taxonomy: name}, "figures": ...}`)."""
    path = cache / CHOICE_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: choose the teachers first (`python -m training choose-teachers`)"
        )
    document: dict[str, Any] = json.loads(path.read_text())
    return document


def choice_label(taxonomy: str, choice: str) -> str:
    """How reports name a choice, e.g. "mean of MTT_musicnn and MTT_vgg"."""
    if choice == MEAN:
        names = " and ".join(t.published_as for t in teachers_of(taxonomy))
        return f"mean of {names}"
    return TEACHER_BY_NAME[choice].published_as
