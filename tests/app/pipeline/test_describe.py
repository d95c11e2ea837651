"""Describing scores, shared by the service and `tagger tag`: expected values are literals."""

from __future__ import annotations

import pytest
import torch

from app.pipeline.describe import (
    best_indices,
    decision_thresholds,
    format_name,
    top_tags,
    track_scores,
    window_times,
)
from model.tags import Tag

TAGS = (
    Tag("rock", "genre", "rock"),
    Tag("piano", "instrument", "piano"),
    Tag("calm", "mood", "calm"),
    Tag("fast", "tempo/dynamics", "fast"),
)


def test_format_names_are_one_plain_name() -> None:
    assert format_name("mov,mp4,m4a,3gp,3g2,mj2") == "mp4"
    assert format_name("ogg") == "ogg"
    assert format_name("matroska,webm") == "matroska"


def test_track_scores_are_the_mean_over_windows() -> None:
    windows = torch.tensor([[0.25, 1.0, 0.0, 0.5], [0.75, 0.0, 0.5, 0.5]])
    assert track_scores(windows).tolist() == [0.5, 0.5, 0.25, 0.5]
    with pytest.raises(ValueError, match="at least one window"):
        track_scores(torch.empty(0, 4))


def test_top_k_is_best_first_and_ties_keep_vocabulary_order() -> None:
    scores = torch.tensor([0.5, 0.75, 0.5, 0.125])
    assert best_indices(scores, 4) == [1, 0, 2, 3]
    assert best_indices(scores, 2) == [1, 0]


def test_top_tags_carry_their_threshold_decision() -> None:
    scores = torch.tensor([0.5, 0.75, 0.25, 0.125])
    thresholds = torch.tensor([0.5, 0.875, 0.25, 0.0625])
    decisions = top_tags(scores, TAGS, thresholds, 3)
    assert [d.tag.name for d in decisions] == ["piano", "rock", "calm"]
    assert [d.score for d in decisions] == [0.75, 0.5, 0.25]
    assert [d.threshold for d in decisions] == [0.875, 0.5, 0.25]
    # A score equal to its threshold passes.
    assert [d.passes_threshold for d in decisions] == [False, True, True]


def test_one_threshold_replaces_the_checkpoints_for_every_tag() -> None:
    checkpoint = torch.tensor([0.5, 0.875, 0.25, 0.0625])
    assert decision_thresholds(checkpoint, None).tolist() == [0.5, 0.875, 0.25, 0.0625]
    assert decision_thresholds(checkpoint, 0.375).tolist() == [0.375] * 4


def test_window_times_clip_the_last_window_to_the_track() -> None:
    # 10 samples at 4 Hz, windows of 4: starts 0, 4 and 6 (the last is aligned to the end).
    assert window_times(10, 4, 4) == [(0.0, 1.0), (1.0, 2.0), (1.5, 2.5)]
    # A track shorter than one window has one window, ending where the track does.
    assert window_times(2, 4, 4) == [(0.0, 0.5)]
    assert window_times(8, 4, 2) == [(0.0, 2.0), (2.0, 4.0)]
