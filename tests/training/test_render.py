"""Rendered music: real synthesis of music21 corpus pieces, decoded back, with the right labels.

The rendering tests need music21, tinysoundfont and pretty_midi (the `train` extra). Without them
they skip with a clear message, except in CI, where they fail.
"""

from __future__ import annotations

import importlib.util
import math
import os
import random
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile

from model.audio.decode import decode_audio
from model.tags import MTAT_TAG_NAMES
from training.distill import render
from training.distill.render import (
    INSTRUMENT_TAGS,
    TAGGED_CLASSES,
    Deck,
    PartInfo,
    Rendering,
    Tempo,
    labels_for,
    split_of,
)

SYNTH_STACK = ("music21", "tinysoundfont", "pretty_midi")


@pytest.fixture(scope="module")
def synth_stack() -> None:
    missing = [name for name in SYNTH_STACK if importlib.util.find_spec(name) is None]
    if missing:
        message = f"{', '.join(missing)} not installed: pip install -e '.[train]' to render"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="module")
def chorale(synth_stack: None) -> Any:
    """Bach's chorale BWV 66.6: four parts, about 23 s, marked crotchet = 96."""
    return render.load_score("bach/bwv66.6.mxl")


def _render_and_decode(score: Any, programs: list[int], tmp_path: Path, seconds: float) -> Any:
    rendering = render.render_score(score, programs, max_seconds=seconds)
    path = tmp_path / "render.flac"
    soundfile.write(path, rendering.samples, render.SAMPLE_RATE, subtype="PCM_16")
    return rendering, decode_audio(path)


def test_violins_render_audible_flac_labelled_violin_and_strings(
    chorale: Any, tmp_path: Path
) -> None:
    rendering, decoded = _render_and_decode(chorale, [40] * 4, tmp_path, seconds=8.0)

    assert decoded.sample_rate == render.SAMPLE_RATE
    assert decoded.container == "flac"
    # The chorale goes on after 8 s, so the render is cut (and faded) at exactly 8 s.
    assert rendering.truncated
    assert len(decoded.samples) == pytest.approx(8.0 * render.SAMPLE_RATE, abs=2)
    rms = float(np.sqrt(np.mean(decoded.samples[: 4 * render.SAMPLE_RATE] ** 2)))
    assert rms > 0.01, f"render is (nearly) silent: RMS {rms}"
    assert float(np.abs(decoded.samples).max()) <= 1.0

    labels = labels_for(rendering)
    assert set(labels) == {*INSTRUMENT_TAGS, "solo"}  # 96 BPM: neither fast nor slow
    assert labels["violin"] == 1
    assert labels["strings"] == 1
    positives = {tag for tag, value in labels.items() if value}
    assert positives == {"violin", "strings"}  # four violins are not a solo
    assert rendering.programs == (40,)
    assert rendering.tempo == Tempo(quarter_bpm=96.0, marked=True)
    [(start, end)] = render.active_tags(rendering)["violin"]
    assert start < 0.5
    assert end == pytest.approx(8.0)


def test_parts_get_their_own_instruments(chorale: Any, tmp_path: Path) -> None:
    # Soprano and alto on the flute, tenor and bass on the cello.
    rendering, decoded = _render_and_decode(chorale, [73, 73, 42, 42], tmp_path, seconds=6.0)
    labels = labels_for(rendering)
    positives = {tag for tag, value in labels.items() if value}
    assert positives == {"flute", "cello", "strings"}
    assert rendering.programs == (42, 73)
    assert rendering.sounding_parts == 4
    assert float(np.sqrt(np.mean(decoded.samples**2))) > 0.01


def test_a_chorale_on_one_piano_is_solo_piano(chorale: Any, tmp_path: Path) -> None:
    rendering, _ = _render_and_decode(chorale, [0] * 4, tmp_path, seconds=4.0)
    positives = {tag for tag, value in labels_for(rendering).items() if value}
    assert positives == {"piano", "solo"}


def test_a_whole_short_piece_ends_after_its_last_note(synth_stack: None) -> None:
    # A grace note is exported as a zero-length note whose note-off precedes its note-on; played
    # in file order, the synthesiser would hold a flute note to the end of the render.
    # Through Any: music21's constructors are not annotated, which strict mypy rejects.
    note: Any = importlib.import_module("music21.note")
    stream: Any = importlib.import_module("music21.stream")
    measure = stream.Measure()
    measure.append(note.Note("D5").getGrace())
    measure.append(note.Note("C5", quarterLength=4))  # 2 s at music21's default 120 BPM
    part = stream.Part()
    part.append(measure)
    score = stream.Score()
    score.insert(0, part)

    rendering = render.render_score(score, [73], max_seconds=30.0)

    assert not rendering.truncated
    assert rendering.duration_s == pytest.approx(2.0 + render.RELEASE_SECONDS, abs=0.05)
    tail = rendering.samples[int(2.5 * render.SAMPLE_RATE) :]
    assert float(np.abs(tail).max()) < 0.05, "a note is still sounding after the piece ended"
    labels = labels_for(rendering)
    assert labels["flute"] == 1
    assert labels["solo"] == 1


def test_survey_measures_parts_and_length(synth_stack: None) -> None:
    item = render.survey("bach/bwv66.6.mxl", seed=0, min_seconds=20.0, max_seconds=60.0)
    assert item.ok
    assert item.seconds == pytest.approx(22.5)  # 36 crotchets at 96 BPM
    medians = [part.median_pitch for part in item.parts]
    assert len(medians) == 4
    assert medians == sorted(medians, reverse=True)  # soprano, alto, tenor, bass
    short = render.survey("bach/bwv66.6.mxl", seed=0, min_seconds=30.0, max_seconds=60.0)
    assert not short.ok
    assert short.reason.startswith("short")


def test_a_tune_from_an_abc_collection_renders(synth_stack: None) -> None:
    # One score of a 14-tune ABC file, whose encoding puts one TimeSignature object in two
    # measures (music21's MIDI export rejects that unless the excerpt gives each its own).
    item = render.survey("oneills1850/0487-0500.abc", seed=0, min_seconds=20.0, max_seconds=60.0)
    assert item.ok
    assert item.piece.startswith("oneills1850/0487-0500.abc#")
    rendering = render.render_score(render.load_score(item.piece), [40], max_seconds=5.0)
    assert rendering.duration_s == pytest.approx(5.0)
    assert float(np.sqrt(np.mean(rendering.samples**2))) > 0.01
    assert labels_for(rendering)["violin"] == 1


def test_every_program_in_the_table_exists_in_the_soundfont(synth_stack: None) -> None:
    import tinysoundfont  # type: ignore[import-untyped]

    synth = tinysoundfont.Synth()
    sfid = synth.sfload(str(render.soundfont_path()))
    missing = [
        (cls.name, program)
        for cls in render.ALL_CLASSES
        for program in cls.programs
        if synth.sfpreset_name(sfid, 0, program) is None
    ]
    assert not missing


def test_label_vocabulary_is_mtat() -> None:
    assert set(INSTRUMENT_TAGS) | {"solo", "fast", "slow"} <= set(MTAT_TAG_NAMES)
    for cls in render.DISTRACTOR_CLASSES:
        assert not cls.tags
    programs = [p for cls in render.ALL_CLASSES for p in cls.programs]
    assert len(programs) == len(set(programs)), "a program is in two classes"


@pytest.mark.parametrize(
    ("bpm", "marked", "expected"),
    [
        (150.0, True, {"fast": 1, "slow": 0}),
        (60.0, True, {"fast": 0, "slow": 1}),
        (100.0, True, {}),
        (150.0, False, {}),  # music21's assumed tempo says nothing about the piece
    ],
)
def test_tempo_tags_only_when_the_score_is_clear(
    bpm: float, marked: bool, expected: dict[str, int]
) -> None:
    rendering = Rendering(
        samples=np.zeros(16000, dtype=np.float32),
        programs=(0,),
        sounding_parts=1,
        tempo=Tempo(quarter_bpm=bpm, marked=marked),
        truncated=False,
    )
    labels = labels_for(rendering)
    assert {tag: labels[tag] for tag in ("fast", "slow") if tag in labels} == expected


@pytest.mark.parametrize(
    ("programs", "parts", "solo"),
    [
        ((40,), 1, 1),  # a fiddle tune on a violin
        ((40,), 4, 0),  # a chorale on four violins
        ((0,), 4, 1),  # a chorale on one piano
        ((48,), 1, 0),  # a melody on a string section
        ((52,), 4, 0),  # a choir
        ((0, 73), 2, 0),  # piano and flute
        ((56,), 1, 1),  # a trumpet (a distractor) alone
    ],
)
def test_solo_means_one_player(programs: tuple[int, ...], parts: int, solo: int) -> None:
    rendering = Rendering(
        samples=np.zeros(16000, dtype=np.float32),
        programs=programs,
        sounding_parts=parts,
        tempo=Tempo(quarter_bpm=100.0, marked=False),
        truncated=False,
    )
    assert labels_for(rendering)["solo"] == solo


def test_split_is_deterministic_and_about_80_10_10() -> None:
    pieces = [f"collection{i % 7}/piece{i}.mxl" for i in range(3000)]
    splits = [split_of(piece) for piece in pieces]
    assert splits == [split_of(piece) for piece in pieces]
    counts = Counter(splits)
    assert set(counts) == {"train", "valid", "test"}
    assert 0.77 < counts["train"] / len(pieces) < 0.83
    assert 0.08 < counts["valid"] / len(pieces) < 0.12
    assert 0.08 < counts["test"] / len(pieces) < 0.12
    # Pinned: a change of hash would silently move pieces between train and test.
    assert split_of("bach/bwv66.6.mxl") == "train"
    assert split_of("beethoven/opus18no4.mxl") == "test"
    assert split_of("essenFolksong/altdeu10.abc#31") == "test"
    assert [split_of(f"p{i}") for i in (1, 11, 12, 17, 20)] == [
        "valid",
        "test",
        "valid",
        "test",
        "train",
    ]


def test_all_renders_of_a_piece_share_its_split() -> None:
    parts = (PartInfo(72.0, 0.0), PartInfo(65.0, 0.0), PartInfo(55.0, 0.0), PartInfo(48.0, 0.0))
    surveys = [
        render.Survey(f"bach/bwv{i}.mxl", True, parts=parts, seconds=40.0) for i in range(60)
    ]
    jobs = render.plan(surveys, seed=0, piano_fraction=0.5, heldout_mixes=2)
    by_piece: dict[str, set[str]] = {}
    for job in jobs:
        by_piece.setdefault(job.piece, set()).add(split_of(job.piece))
        assert len(job.programs) == len(parts)
    assert all(len(splits) == 1 for splits in by_piece.values())
    assert len({job.path for job in jobs}) == len(jobs)
    # Held-out pieces get two random mixes, training pieces one.
    mixes = Counter(job.piece for job in jobs if job.variant.startswith("mix"))
    for piece, count in mixes.items():
        assert count == (1 if split_of(piece) == "train" else 2)
    assert jobs == render.plan(surveys, seed=0, piano_fraction=0.5, heldout_mixes=2)


def test_deck_deals_every_instrument_equally() -> None:
    deck = Deck(random.Random(0))
    dealt = Counter(cls.name for _ in range(40) for cls in deck.draw(3))
    tagged = [dealt[cls.name] for cls in TAGGED_CLASSES]
    # 120 cards = 8 rounds of 15 (12 tagged classes + 3 distractors): 8 of each, give or take
    # the cards skipped to keep the three of a render distinct.
    assert max(tagged) - min(tagged) <= 2
    assert math.isclose(sum(dealt.values()), 120)


def test_parts_are_matched_to_instruments_by_pitch() -> None:
    deck = Deck(random.Random(1))
    rng = random.Random(2)
    parts = [PartInfo(72.0, 0.0), PartInfo(43.0, 0.0), PartInfo(math.nan, math.inf)]
    for _ in range(50):
        programs = render.mix_programs(parts, deck, rng)
        high = render.class_of_program(programs[0])
        low = render.class_of_program(programs[1])
        assert high is not None
        assert low is not None
        assert high.centre >= low.centre
