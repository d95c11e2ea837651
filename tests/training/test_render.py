"""Rendered music: real synthesis of music21 corpus pieces, decoded back, with the right labels.

The rendering tests need music21, tinysoundfont and pretty_midi (the `train` extra). Without them
they skip with a clear message, except in CI, where they fail. The Debian soundfonts are fetched
in the test setup (apt-get download + dpkg-deb, into the git-ignored data/rendered/soundfonts,
where the render step keeps them too); without apt those tests skip, except in CI.
"""

from __future__ import annotations

import importlib.util
import math
import os
import random
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile

from model.audio.decode import decode_audio
from model.tags import TWO_VOCABULARY_TAGS
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

ROOT = Path(__file__).resolve().parents[2]
SYNTH_STACK = ("music21", "tinysoundfont", "pretty_midi")
TAG_IDS = {tag.id for tag in TWO_VOCABULARY_TAGS}
VOICE = {"mtt/voice", "mtt/vocal", "mtt/vocals", "mtt/singing"}
NO_VOICE = {"mtt/no vocal", "mtt/no vocals", "mtt/no voice", "msd/instrumental"}
DRUMS = {"mtt/drums", "mtt/beat", "mtt/beats"}


@pytest.fixture(scope="module")
def synth_stack() -> None:
    missing = [name for name in SYNTH_STACK if importlib.util.find_spec(name) is None]
    if missing:
        message = f"{', '.join(missing)} not installed: pip install -e '.[train]' to render"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="module")
def debian_soundfonts(synth_stack: None) -> dict[str, Path]:
    """FluidR3_GM and MuseScore_General, fetched from Debian unless the render step already did."""
    cache = ROOT / "data" / "rendered" / "soundfonts"
    fonts = (render.FLUIDR3, render.MUSESCORE)
    fetched = all(render.cached_path(sf, cache).is_file() for sf in fonts)
    if not fetched and (shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None):
        message = "apt-get and dpkg-deb are needed to fetch the Debian soundfonts"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return {sf.name: render.fetch_soundfont(sf, cache) for sf in fonts}


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
    assert set(labels) == {*INSTRUMENT_TAGS, "mtt/solo"}  # 96 BPM: neither fast nor slow
    assert labels["mtt/violin"] == 1
    assert labels["mtt/strings"] == 1
    positives = {tag for tag, value in labels.items() if value}
    # Four violins are not a solo; no voice sings, so the "no vocal(s)" tags are known to hold.
    assert positives == {"mtt/violin", "mtt/strings", *NO_VOICE}
    assert labels["mtt/drums"] == labels["mtt/choir"] == labels["mtt/vocals"] == 0
    assert rendering.programs == (40,)
    assert rendering.tempo == Tempo(quarter_bpm=96.0, marked=True)
    [(start, end)] = render.active_tags(rendering)["mtt/violin"]
    assert start < 0.5
    assert end == pytest.approx(8.0)


def test_parts_get_their_own_instruments(chorale: Any, tmp_path: Path) -> None:
    # Soprano and alto on the flute, tenor and bass on the cello.
    rendering, decoded = _render_and_decode(chorale, [73, 73, 42, 42], tmp_path, seconds=6.0)
    labels = labels_for(rendering)
    positives = {tag for tag, value in labels.items() if value}
    assert positives == {"mtt/flute", "mtt/cello", "mtt/strings", *NO_VOICE}
    assert rendering.programs == (42, 73)
    assert rendering.sounding_parts == 4
    assert float(np.sqrt(np.mean(decoded.samples**2))) > 0.01


def test_a_chorale_on_one_piano_is_solo_piano(chorale: Any, tmp_path: Path) -> None:
    rendering, _ = _render_and_decode(chorale, [0] * 4, tmp_path, seconds=4.0)
    positives = {tag for tag, value in labels_for(rendering).items() if value}
    assert positives == {"mtt/piano", "mtt/solo", *NO_VOICE}


def test_a_chorale_sung_by_a_choir_is_choir_and_not_instrumental(
    chorale: Any, tmp_path: Path
) -> None:
    rendering, decoded = _render_and_decode(chorale, [52] * 4, tmp_path, seconds=4.0)
    labels = labels_for(rendering)
    positives = {tag for tag, value in labels.items() if value}
    assert positives == {"mtt/choir", "mtt/choral", *VOICE}
    assert labels["mtt/no vocals"] == labels["mtt/no vocal"] == 0
    assert labels["msd/instrumental"] == 0
    assert labels["mtt/solo"] == 0  # a choir is never a solo
    assert render.voice_of(rendering.programs) == "choir"
    [(start, end)] = render.active_tags(rendering)["mtt/choir"]
    assert start < 0.5
    assert end == pytest.approx(4.0)
    assert float(np.sqrt(np.mean(decoded.samples**2))) > 0.01


def test_solo_vox_over_a_piano_is_a_voice_but_not_a_choir(chorale: Any, tmp_path: Path) -> None:
    rendering, _ = _render_and_decode(chorale, [85, 0, 0, 0], tmp_path, seconds=4.0)
    labels = labels_for(rendering)
    positives = {tag for tag, value in labels.items() if value}
    assert positives == {"mtt/piano", *VOICE}
    assert labels["mtt/choir"] == labels["mtt/choral"] == 0
    assert labels["mtt/no voice"] == 0
    assert render.voice_of(rendering.programs) == "solo voice"


def _high_share(samples: np.ndarray, start_s: float, end_s: float) -> float:
    """Share of the spectrum's magnitude above 3 kHz: hi-hats put it there, a piano does not."""
    clip = samples[int(start_s * render.SAMPLE_RATE) : int(end_s * render.SAMPLE_RATE)]
    spectrum = np.abs(np.fft.rfft(clip))
    freqs = np.fft.rfftfreq(len(clip), 1 / render.SAMPLE_RATE)
    return float(spectrum[freqs > 3000].sum() / spectrum.sum())


def test_a_drum_part_sounds_from_its_bar_to_its_stop_and_is_labelled(chorale: Any) -> None:
    # BWV 66.6 is in 4/4 at crotchet = 96 after a one-crotchet pickup: bar 1 starts at 0.625 s and
    # bars last 2.5 s. Drums from bar 1, stopping at the first bar that starts after 6 s (8.125 s):
    # three bars of kick/snare on the beats and hi-hats on the quavers, plus one entry crash.
    kit = next(kit for kit in render.DRUM_KITS if kit.name == "standard")
    part = render.DrumPart(kit, start_bar=1, stop_s=6.0)
    rendering = render.render_score(
        chorale, [0] * 4, max_seconds=10.0, drums=part, drum_seed="test"
    )
    assert rendering.drum_hits == 3 * (4 + 8) + 1
    labels = labels_for(rendering)
    assert {tag: labels[tag] for tag in DRUMS} == dict.fromkeys(DRUMS, 1)
    assert labels["mtt/solo"] == 0  # a pianist and a drummer
    assert labels["mtt/piano"] == 1
    active = render.active_tags(rendering)
    # The last hi-hat is 3.5 crotchets into the bar at 5.625 s (7.8125 s); it counts 0.3 s.
    for tag in DRUMS:
        assert active[tag] == [[0.62, 8.11]]
    assert active["mtt/piano"] == [[0.0, 10.0]]
    # Audible: hats fill the top of the spectrum while they play and not once they stop.
    during = _high_share(rendering.samples, 1.0, 7.5)
    after = _high_share(rendering.samples, 8.6, 10.0)
    assert during > 4 * after, (during, after)
    without = render.render_score(chorale, [0] * 4, max_seconds=10.0)
    assert labels_for(without)["mtt/drums"] == 0
    assert "mtt/drums" not in render.active_tags(without)


def test_the_debian_soundfonts_load_and_play_every_program(
    debian_soundfonts: dict[str, Path], chorale: Any
) -> None:
    import tinysoundfont  # type: ignore[import-untyped]

    assert debian_soundfonts["FluidR3_GM"].name == "FluidR3_GM.sf2"
    assert debian_soundfonts["MuseScore_General"].name == "MuseScore_General_Full.sf2"
    for path in debian_soundfonts.values():
        synth = tinysoundfont.Synth()
        sfid = synth.sfload(str(path))
        missing = [
            program
            for cls in render.ALL_CLASSES
            for program in cls.programs
            if synth.sfpreset_name(sfid, 0, program) is None
        ]
        missing_kits = [
            kit.name
            for kit in render.DRUM_KITS
            if synth.sfpreset_name(sfid, 128, kit.preset) is None
        ]
        assert not missing, (path.name, missing)
        assert not missing_kits, (path.name, missing_kits)
        # The soundfont asked for is the one heard: the same choir differs from TimGM6mb's.
        bundled = render.render_score(chorale, [52] * 4, max_seconds=3.0)
        other = render.render_score(chorale, [52] * 4, max_seconds=3.0, soundfont=path)
        assert len(other.samples) == len(bundled.samples)
        assert float(np.sqrt(np.mean(other.samples**2))) > 0.01
        correlation = np.corrcoef(bundled.samples, other.samples)[0, 1]
        assert correlation < 0.9, (path.name, correlation)


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
    assert labels["mtt/flute"] == 1
    assert labels["mtt/solo"] == 1


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
    assert labels_for(rendering)["mtt/violin"] == 1


def test_every_program_in_the_table_exists_in_the_soundfont(synth_stack: None) -> None:
    import tinysoundfont

    synth = tinysoundfont.Synth()
    sfid = synth.sfload(str(render.bundled_soundfont_path()))
    missing = [
        (cls.name, program)
        for cls in render.ALL_CLASSES
        for program in cls.programs
        if synth.sfpreset_name(sfid, 0, program) is None
    ]
    missing_kits = [
        kit.name for kit in render.DRUM_KITS if synth.sfpreset_name(sfid, 128, kit.preset) is None
    ]
    assert not missing
    assert not missing_kits


def test_labels_are_keyed_by_two_vocabulary_ids() -> None:
    assert set(INSTRUMENT_TAGS) | {"mtt/solo", "mtt/fast", "mtt/slow"} <= TAG_IDS
    assert {"mtt/choir", "mtt/no vocals", "msd/instrumental", "msd/guitar", "mtt/drums"} <= set(
        INSTRUMENT_TAGS
    )
    # Unknown, never labelled: a GM voice has no stable sex, and "acoustic" is not decided.
    for tag in ("mtt/female", "mtt/male vocal", "msd/female vocalists", "msd/acoustic"):
        assert tag not in INSTRUMENT_TAGS
    for cls in render.DISTRACTOR_CLASSES:
        assert not cls.tags
    programs = [p for cls in render.ALL_CLASSES for p in cls.programs]
    assert len(programs) == len(set(programs)), "a program is in two classes"
    guitar = render.class_of_program(24)
    assert guitar is not None
    assert guitar.tags == ("mtt/guitar", "msd/guitar")
    # One singer is a voice, not a choir; Choir Aahs and Voice Oohs are choirs.
    assert set(render.SOLO_VOICE.tags) == VOICE
    assert render.CHOIR.programs == (52, 53)
    assert {"mtt/choir", "mtt/choral"} <= set(render.CHOIR.tags)


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
    found = {
        tag.removeprefix("mtt/"): labels[tag] for tag in ("mtt/fast", "mtt/slow") if tag in labels
    }
    assert found == expected


@pytest.mark.parametrize(
    ("programs", "parts", "solo"),
    [
        ((40,), 1, 1),  # a fiddle tune on a violin
        ((40,), 4, 0),  # a chorale on four violins
        ((0,), 4, 1),  # a chorale on one piano
        ((48,), 1, 0),  # a melody on a string section
        ((52,), 4, 0),  # a choir
        ((53,), 1, 0),  # Voice Oohs: a choir too, even on one melody
        ((85,), 1, 1),  # one singer alone
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
    assert labels_for(rendering)["mtt/solo"] == solo


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
    choral = surveys[40:]  # chorales are split by piece like every other piece
    jobs = render.plan(
        surveys[:40], seed=0, piano_fraction=0.5, heldout_mixes=2, choral=choral, drum_fraction=0.5
    )
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
    assert {job.piece for job in jobs if job.variant == "choir"} == {s.piece for s in choral}
    assert jobs == render.plan(
        surveys[:40], seed=0, piano_fraction=0.5, heldout_mixes=2, choral=choral, drum_fraction=0.5
    )


def test_plan_spreads_soundfonts_and_deals_voices_and_drums() -> None:
    four = (PartInfo(72.0, 0.0), PartInfo(65.0, 0.0), PartInfo(55.0, 0.0), PartInfo(48.0, 0.0))
    one = (PartInfo(70.0, 0.0),)
    tunes = [render.Survey(f"folk/tune{i}.abc", True, parts=one, seconds=40.0) for i in range(90)]
    chorales = [
        render.Survey(f"bach/bwv{i}.6.mxl", True, parts=four, seconds=40.0) for i in range(60)
    ]
    names = [sf.name for sf in render.SOUNDFONTS]
    jobs = render.plan(
        tunes,
        seed=0,
        piano_fraction=0.3,
        heldout_mixes=2,
        vox_fraction=0.2,
        drum_fraction=0.4,
        choral=chorales,
        soundfonts=names,
    )
    assert names == ["TimGM6mb", "FluidR3_GM", "MuseScore_General"]
    for split in ("train", "valid", "test"):
        fonts = Counter(job.soundfont for job in jobs if split_of(job.piece) == split)
        assert set(fonts) <= set(names)
        # Dealt in rounds: a split's counts differ by at most one.
        assert max(fonts.values()) - min(fonts.get(name, 0) for name in names) <= 1, fonts
    variants = Counter(job.variant for job in jobs)
    assert variants["choir"] == 60
    assert variants["vox"] >= 60
    for job in jobs:
        if job.variant == "choir":
            assert len(set(job.programs)) == 1
            assert job.programs[0] in (52, 53)
        if job.variant == "vox":
            # Solo Vox sings one part only (the highest), or alone in a one-part tune.
            sung = [i for i, p in enumerate(job.programs) if p == 85]
            assert sung == [0]  # part 0 is the highest of both layouts
            assert all(p != 52 and p != 53 for p in job.programs)
        if job.variant in ("choir", "piano"):
            assert not job.drums
    drummed = [job for job in jobs if job.variant.startswith(("mix", "vox"))]
    share = sum(job.drums for job in drummed) / len(drummed)
    assert 0.3 < share < 0.5
    assert jobs == render.plan(
        tunes,
        seed=0,
        piano_fraction=0.3,
        heldout_mixes=2,
        vox_fraction=0.2,
        drum_fraction=0.4,
        choral=chorales,
        soundfonts=names,
    )


@pytest.mark.parametrize(
    ("bpm", "kits"),
    [
        (60.0, {"brush", "jazz", "room"}),
        (100.0, {"standard", "room", "jazz", "power"}),
        (160.0, {"power", "electronic", "standard"}),
    ],
)
def test_drum_kits_suit_the_tempo(bpm: float, kits: set[str]) -> None:
    rng = random.Random(0)
    parts = [render.choose_drums(bpm, rng, 60.0) for _ in range(200)]
    assert {part.kit.name for part in parts} == kits
    assert {part.start_bar for part in parts} == {1, 2, 3}
    stops = [part.stop_s for part in parts if part.stop_s is not None]
    assert 0.2 < len(stops) / len(parts) < 0.4
    assert all(0.55 * 60 <= stop <= 0.85 * 60 for stop in stops)


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
