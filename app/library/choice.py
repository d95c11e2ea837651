"""Which tags of a track go into a music library: per category, the tags whose score passes its
decision threshold, best first, each synonym group once, at most `top_k` per category.

`tagger write-tags` writes the genres and moods chosen here into files, and the beets plugin
stores every category in flexible attributes; both name a chosen tag by its synonym group
(`classic` and `classical` are one genre, `chillout` and `chill` one mood), which is also the
name players show. The settings that shaped a choice, with the model that scored, have a short
digest: a file or item written with the same digest is skipped on a rerun.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import cached_property

import torch

from app.pipeline.describe import top_indices
from app.pipeline.vocabulary import Vocabulary
from model.tags import CATEGORIES, Category, Tag

SCORE_DIGITS = 4  # in files and library fields: the model is not more precise than this
DEFAULT_TOP_K = 3

# Which category ends up in which library field (`Choice.values`); the rest stay in the scores.
LIBRARY_CATEGORIES: tuple[Category, ...] = ("genre", "mood", "instrument", "vocal")


class ChoiceError(ValueError):
    """Settings that cannot choose tags of this model (an unknown taxonomy, a bad top-k)."""


@dataclass(frozen=True)
class ChoiceSettings:
    """How tags are chosen from scores.

    Attributes:
        threshold: One decision threshold for every tag; None for the model's per-tag
            calibrated thresholds.
        top_k: At most this many values per category (genres, moods, ...), best first.
        taxonomy: Only this taxonomy's tags (`mtt`, `msd`) of a multi-vocabulary model; None
            for all.
        mode: `merge` keeps a file's own genres and moods beside ours, `replace` puts ours in
            their place (strip-tags restores them). Part of the digest: a rerun in another mode
            rewrites.
    """

    threshold: float | None = None
    top_k: int = DEFAULT_TOP_K
    taxonomy: str | None = None
    mode: str = "merge"

    def check(self) -> None:
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            raise ChoiceError(f"threshold must lie in [0, 1], got {self.threshold}")
        if self.top_k < 1:
            raise ChoiceError(f"top-k must be at least 1, got {self.top_k}")
        if self.mode not in ("merge", "replace"):
            raise ChoiceError(f"mode must be merge or replace, got {self.mode!r}")

    def digest(self, model_id: str) -> str:
        """16 hex digits naming this model with these settings."""
        document = {"model_id": model_id, **asdict(self), "rule": 1}
        text = json.dumps(document, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Choice:
    """The tags chosen for one track.

    Attributes:
        model_id: The model that scored (preset and checkpoint digest prefix).
        digest: `ChoiceSettings.digest` of the model and settings.
        settings: The settings.
        values: Category -> chosen synonym-group names, best first (genre, mood, instrument,
            vocal; a category with nothing chosen maps to an empty tuple).
        tags: The ids of every chosen tag, any category, best first.
        scores: Tag id -> score, every tag of the taxonomy, rounded to `SCORE_DIGITS`.
    """

    model_id: str
    digest: str
    settings: ChoiceSettings
    values: dict[str, tuple[str, ...]]
    tags: tuple[str, ...]
    scores: dict[str, float] = field(repr=False)

    @property
    def genres(self) -> tuple[str, ...]:
        return self.values["genre"]

    @property
    def moods(self) -> tuple[str, ...]:
        return self.values["mood"]


@dataclass(frozen=True)
class Chooser:
    """Chooses tags from the scores of one model; see the module docstring."""

    model_id: str
    tags: tuple[Tag, ...]
    thresholds: tuple[float, ...]
    settings: ChoiceSettings

    def __post_init__(self) -> None:
        self.settings.check()
        if len(self.thresholds) != len(self.tags):
            raise ChoiceError(f"{len(self.thresholds)} thresholds for {len(self.tags)} tags")
        try:
            self._columns  # noqa: B018 (validates the taxonomy now, not at the first file)
        except ValueError as error:
            raise ChoiceError(str(error)) from error

    @cached_property  # cached_property writes the instance's __dict__: fine when frozen
    def _columns(self) -> tuple[int, ...]:
        return Vocabulary(self.tags).select(self.settings.taxonomy)

    @property
    def digest(self) -> str:
        return self.settings.digest(self.model_id)

    def decision_thresholds(self) -> list[float]:
        if self.settings.threshold is None:
            return list(self.thresholds)
        return [self.settings.threshold] * len(self.tags)

    def choose(self, scores: Sequence[float]) -> Choice:
        """The chosen tags of one track's (n_tags,) scores, in model output order."""
        if len(scores) != len(self.tags):
            raise ChoiceError(f"{len(scores)} scores for {len(self.tags)} tags")
        thresholds = self.decision_thresholds()
        columns = self._columns
        # One per synonym group whatever the vocabulary: a library field holds group names.
        order = top_indices(
            torch.tensor(list(scores), dtype=torch.float64),
            self.tags,
            len(self.tags),
            among=columns,
            one_per_group=True,
        )
        passing = [i for i in order if scores[i] >= thresholds[i]]
        values: dict[str, list[str]] = {category: [] for category in CATEGORIES}
        chosen: list[str] = []
        for i in passing:
            tag = self.tags[i]
            names = values[tag.category]
            if len(names) < self.settings.top_k and tag.synonym_group not in names:
                names.append(tag.synonym_group)
                chosen.append(tag.id)
        return Choice(
            model_id=self.model_id,
            digest=self.digest,
            settings=self.settings,
            values={category: tuple(values[category]) for category in LIBRARY_CATEGORIES},
            tags=tuple(chosen),
            scores={self.tags[i].id: round(float(scores[i]), SCORE_DIGITS) for i in columns},
        )
