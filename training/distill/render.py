"""Rendered music with true instrument labels: music21 corpus pieces played by random GM programs.

Each piece of the music21 corpus is cut to its first `max_seconds`, its parts are given General
MIDI programs from a fixed table, and it is synthesised offline with tinysoundfont and the
TimGM6mb soundfont that ships inside `pretty_midi`. The labels come from the MIDI events that
really sound, so a render of a piano+flute duo is piano=1, flute=1 and violin=cello=...=0.

    python -m training.distill.render --dest data/rendered --pieces 120 --seed 0 [--workers 1]

Output, under `dest`:
    audio/<piece>__<variant>.flac   16 kHz mono FLAC, at most `max_seconds` long
    manifest.jsonl                  one object per render:
        path        FLAC path relative to `dest`
        piece       corpus path (plus "#k" for the k-th score of an opus): the held-out unit
        split       `split_of(piece)`
        variant     "mix", "mix2", ... (random programs) or "piano" (every part on a piano)
        programs    GM programs (0-based) that sound in the render; part_programs: one per part
        labels      tag -> 0/1 for every tag in INSTRUMENT_TAGS plus "solo"; "fast"/"slow" only
                    when the score marks a clearly fast (>= 140) or slow (<= 70) quarter BPM
        active      positive instrument tag -> [[start_s, end_s], ...] where it sounds, for
                    window-level labels (rests longer than a second split the spans)
        tempo_bpm, tempo_marked, duration_s, soundfont, licence, composer, title, timings
    survey.jsonl                    parsed-corpus cache: a rerun resumes without parsing again

Reruns keep what `manifest.jsonl` lists; delete `dest` after changing the tables below.

Programs are dealt from one shuffled deck per split, so every instrument class gets about the same
number of renders in train, valid and test; the parts are matched to the instruments by pitch
(the lowest part gets the lowest instrument). A fraction of pieces is also rendered as solo piano
so the piano tag has plenty of positives. Genre tags are left to the teacher: a Bach chorale on a
sitar is not "classical" in the sense MagnaTagATune annotators used.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import hashlib
import importlib.util
import itertools
import json
import logging
import math
import random
import re
import time
import warnings
from collections import Counter, defaultdict, deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

log = logging.getLogger(__name__)

Split = Literal["train", "valid", "test"]

SAMPLE_RATE = 16000
# Synthesise above the target rate: TinySoundFont interpolates linearly, which aliases badly when
# a sample is pitched up at a low output rate. 48 kHz -> 16 kHz is an integer 3:1 resample.
SYNTH_RATE = 48000
MIN_SECONDS = 20.0
MAX_SECONDS = 60.0
RELEASE_SECONDS = 1.0  # kept after the last note-off so decays are not cut
FADE_SECONDS = 0.5  # fade-out when a piece is cut at `max_seconds`
FAST_BPM = 140.0
SLOW_BPM = 70.0
DRUM_CHANNEL = 9
ACTIVE_GAP_SECONDS = 1.0  # rests shorter than this do not split an instrument's active span

CORPUS_LICENCE = (
    "music21 corpus: out of copyright in the US or distributed with the encoders' permission; "
    "some encodings may restrict commercial use (music21/corpus/license.txt)"
)
SOUNDFONT_NAME = "TimGM6mb.sf2 (bundled with pretty_midi)"

# Collections that are test files, analyses or chord charts rather than playable scores.
_SKIPPED_COLLECTIONS = frozenset({"demos", "theoryExercises", "leadSheet"})
_SKIPPED_SUFFIXES = frozenset({".rntxt"})


@dataclass(frozen=True)
class InstrumentClass:
    """A family of GM programs that sound like one MTAT instrument tag (or none: a distractor).

    Attributes:
        name: Short name, used in logs and statistics.
        programs: GM program numbers, 0-based (GM "Violin" 41 is 40 here).
        tags: MTAT tags that are positive when this class sounds.
        low, high: Comfortable MIDI pitch range; parts outside it are moved by octaves.
        polyphonic: One player can play several parts at once (a chorale on one piano is solo).
        ensemble: A section or choir, never a solo, even on a single melody.
    """

    name: str
    programs: tuple[int, ...]
    tags: tuple[str, ...]
    low: int
    high: int
    polyphonic: bool = False
    ensemble: bool = False

    @property
    def centre(self) -> float:
        return (self.low + self.high) / 2


TAGGED_CLASSES: tuple[InstrumentClass, ...] = (
    # Honky-tonk (3) and the electric pianos (4, 5) are left out: detuned or Rhodes-like
    # sounds that annotators may or may not call "piano".
    InstrumentClass("piano", (0, 1, 2), ("piano",), 21, 108, polyphonic=True),
    InstrumentClass("harpsichord", (6,), ("harpsichord",), 29, 89, polyphonic=True),
    InstrumentClass("violin", (40,), ("violin", "strings"), 55, 100),
    InstrumentClass("viola", (41,), ("strings",), 48, 88),
    InstrumentClass("cello", (42,), ("cello", "strings"), 36, 76),
    InstrumentClass("string ensemble", (48, 49), ("strings",), 28, 96, ensemble=True),
    InstrumentClass("harp", (46,), ("harp",), 24, 103, polyphonic=True),
    InstrumentClass("flute", (73,), ("flute",), 60, 96),
    InstrumentClass("sitar", (104,), ("sitar",), 48, 84),
    InstrumentClass("guitar", (24, 25), ("guitar",), 40, 84, polyphonic=True),
    InstrumentClass("choir", (52,), ("choir", "choral"), 40, 81, ensemble=True),
    InstrumentClass("synth", (80, 81, 89, 90), ("synth",), 36, 96, polyphonic=True),
)
PIANO = TAGGED_CLASSES[0]

# Instruments with no MTAT tag: they make the model tell "a melody instrument" from "a flute".
# Recorder and pan flute are left out (too close to "flute"), as are contrabass and pizzicato or
# tremolo strings (they would need "strings" but not reliably sound like it in this soundfont).
DISTRACTOR_CLASSES: tuple[InstrumentClass, ...] = (
    InstrumentClass("organ", (19,), (), 36, 96, polyphonic=True),
    InstrumentClass("accordion", (21,), (), 53, 89, polyphonic=True),
    InstrumentClass("vibraphone", (11,), (), 53, 89, polyphonic=True),
    InstrumentClass("marimba", (12,), (), 45, 96, polyphonic=True),
    InstrumentClass("trumpet", (56,), (), 55, 82),
    InstrumentClass("trombone", (57,), (), 40, 72),
    InstrumentClass("french horn", (60,), (), 41, 77),
    InstrumentClass("oboe", (68,), (), 58, 91),
    InstrumentClass("bassoon", (70,), (), 34, 75),
    InstrumentClass("clarinet", (71,), (), 50, 91),
)
ALL_CLASSES = TAGGED_CLASSES + DISTRACTOR_CLASSES
# The deck holds every tagged class once and this many distractor cards per round.
DISTRACTOR_CARDS = 3

# Every tag a render is labelled with, 0 or 1: the tagged classes' tags, plus "drums", which is
# always 0 because percussion channels are never rendered.
INSTRUMENT_TAGS: tuple[str, ...] = (
    *dict.fromkeys(tag for cls in TAGGED_CLASSES for tag in cls.tags),
    "drums",
)

_CLASS_OF_PROGRAM: dict[int, InstrumentClass] = {
    program: cls for cls in ALL_CLASSES for program in cls.programs
}


def class_of_program(program: int) -> InstrumentClass | None:
    """The instrument class a GM program (0-based) belongs to, or None for unlisted programs."""
    return _CLASS_OF_PROGRAM.get(program)


def split_of(piece: str) -> Split:
    """Assign a whole piece to train/valid/test (80/10/10) by a stable hash of its corpus path."""
    bucket = int.from_bytes(hashlib.sha256(piece.encode("utf-8")).digest()[:8], "big") % 100
    if bucket < 80:
        return "train"
    return "valid" if bucket < 90 else "test"


def soundfont_path() -> Path:
    """The TimGM6mb soundfont inside the installed `pretty_midi` package (which is not imported)."""
    spec = importlib.util.find_spec("pretty_midi")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("pretty_midi is not installed: it carries the TimGM6mb soundfont")
    path = Path(next(iter(spec.submodule_search_locations))) / "TimGM6mb.sf2"
    if not path.is_file():
        raise FileNotFoundError(f"no TimGM6mb.sf2 in the pretty_midi package at {path.parent}")
    return path


@cache
def _soundfont_bytes(path: Path) -> bytes:
    return path.read_bytes()


# ---------------------------------------------------------------------------------------------
# Scores: loading, tempo, excerpting
# ---------------------------------------------------------------------------------------------


def corpus_root() -> Path:
    from music21 import corpus

    return Path(corpus.__file__).parent


def candidate_pieces() -> list[str]:
    """Corpus paths (relative, POSIX) of the core corpus files that are playable scores."""
    from music21 import corpus

    root = corpus_root()
    found = []
    for path in corpus.getCorePaths():
        rel = Path(path).relative_to(root)
        if rel.parts[0] in _SKIPPED_COLLECTIONS or rel.suffix in _SKIPPED_SUFFIXES:
            continue
        found.append(rel.as_posix())
    return sorted(found)


def _parse(path: str) -> Any:
    from music21 import converter

    return converter.parse(corpus_root() / path)


def _pick(parsed: Any, path: str, index: str) -> Any:
    from music21 import stream

    if isinstance(parsed, stream.Opus):
        return list(parsed.scores)[int(index) if index else 0]
    if index not in ("", "0"):
        raise ValueError(f"{path} is a single score, not an opus: no score #{index}")
    return parsed


def load_score(piece: str) -> Any:
    """Parse a piece id ("bach/bwv66.6.mxl", or "path.abc#3" for score 3 of an opus)."""
    path, _, index = piece.partition("#")
    return _pick(_parse(path), path, index)


@dataclass(frozen=True)
class Tempo:
    """The tempo at the start of a score: quarter notes per minute, and whether the score says so
    (music21 assumes 120 when it does not, which is no evidence of anything)."""

    quarter_bpm: float
    marked: bool


def _tempo_segments(score: Any) -> list[tuple[float, float, float]]:
    """(start, end, quarter BPM) segments in quarter lengths; 120 where the score marks none."""
    segments = []
    for start, end, mark in score.metronomeMarkBoundaries():
        bpm = mark.getQuarterBPM()
        segments.append((float(start), float(end), float(bpm) if bpm else 120.0))
    return segments


def start_tempo(score: Any) -> Tempo:
    from music21 import tempo

    boundaries = score.metronomeMarkBoundaries()
    if not boundaries:
        return Tempo(quarter_bpm=120.0, marked=False)
    # A text mark music21 cannot read ("Tempo di minuetto") has no BPM: that is no evidence.
    bpm = boundaries[0][2].getQuarterBPM()
    marks = score.flatten().getElementsByClass(tempo.TempoIndication)
    marked = bpm is not None and any(float(mark.offset) < 1.0 for mark in marks)
    return Tempo(quarter_bpm=float(bpm) if bpm else 120.0, marked=marked)


def seconds_at(score: Any, offset: float) -> float:
    """Seconds from the start of `score` to quarter-length `offset`, following its tempo marks."""
    seconds = 0.0
    for start, end, bpm in _tempo_segments(score):
        if offset <= start:
            break
        seconds += (min(end, offset) - start) * 60.0 / bpm
    return seconds


def offset_at(score: Any, seconds: float) -> float:
    """Quarter-length offset reached after `seconds` (the inverse of `seconds_at`)."""
    elapsed = 0.0
    offset = 0.0
    for start, end, bpm in _tempo_segments(score):
        length = (end - start) * 60.0 / bpm
        if elapsed + length >= seconds:
            return start + (seconds - elapsed) * bpm / 60.0
        elapsed += length
        offset = end
    return offset


_SHARED_MARKS = ("TimeSignature", "KeySignature", "TempoIndication")


def excerpt(score: Any, max_seconds: float) -> Any:
    """A copy of `score` cut after the measure that reaches `max_seconds` (plus a margin).

    Cutting before MIDI export matters: music21 exports a whole string quartet in minutes. Repeat
    signs are removed because a cut can leave them unbalanced, which music21's export rejects.
    """
    from music21 import bar, repeat, spanner, stream

    cutoff = offset_at(score, max_seconds + 2.0)
    parts = list(score.parts)
    measures = list(parts[0].getElementsByClass(stream.Measure)) if parts else []
    if measures and float(score.highestTime) > cutoff:
        keep = max(1, sum(1 for m in measures if float(m.offset) < cutoff))
        # `measures` shares the Measure objects with `score`: copy before editing them.
        cut = copy.deepcopy(score.measures(0, keep - 1, indicesNotNumbers=True))
    else:
        cut = copy.deepcopy(score)
    seen: set[int] = set()
    for measure in cut.recurse().getElementsByClass(stream.Measure):
        # Some ABC encodings put one TimeSignature object in two measures, which music21's MIDI
        # export (it gathers them into a conductor track) rejects: give each measure its own.
        for element in list(measure.getElementsByClass(_SHARED_MARKS)):
            if id(element) in seen:
                measure.replace(element, copy.deepcopy(element))
            seen.add(id(element))
        if isinstance(measure.leftBarline, bar.Repeat):
            measure.leftBarline = None
        if isinstance(measure.rightBarline, bar.Repeat):
            measure.rightBarline = None
    for element in list(cut.recurse().getElementsByClass(repeat.RepeatExpression)):
        element.activeSite.remove(element)
    for bracket in list(cut.recurse().getElementsByClass(spanner.RepeatBracket)):
        for site in list(bracket.sites.get()):
            if isinstance(site, stream.Stream) and bracket in site:
                site.remove(bracket)
    return cut


@dataclass(frozen=True)
class PartInfo:
    """What the program assignment needs to know about one part of an excerpt."""

    median_pitch: float  # MIDI pitch; NaN for a part without pitched notes
    first_note_s: float  # when it first plays, inf if never


def part_infos(score: Any) -> list[PartInfo]:
    infos = []
    for part in score.parts:
        pitches: list[float] = []
        first = math.inf
        for element in part.flatten().notes:
            pitches.extend(float(p.midi) for p in element.pitches)
            first = min(first, float(element.offset))
        median = float(np.median(pitches)) if pitches else math.nan
        infos.append(PartInfo(median, seconds_at(score, first) if pitches else math.inf))
    return infos


# ---------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------


@dataclass
class Rendering:
    """One rendered excerpt.

    Attributes:
        samples: (T,) float32 mono audio at SAMPLE_RATE, peak-normalised.
        programs: GM programs that sound, sorted.
        sounding_parts: How many score parts play at least one note in the render.
        tempo: Tempo at the start of the score.
        truncated: The piece goes on after the render ends.
        active: Program -> merged [start_s, end_s] spans where it sounds.
    """

    samples: npt.NDArray[np.float32]
    programs: tuple[int, ...]
    sounding_parts: int
    tempo: Tempo
    truncated: bool
    active: dict[int, list[tuple[float, float]]] = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        return len(self.samples) / SAMPLE_RATE


def assign_programs(score: Any, programs: Sequence[int], max_seconds: float = MAX_SECONDS) -> Any:
    """An excerpt of `score` whose part i is played by GM program `programs[i]`.

    Every existing instrument (and its program changes) is removed first, so music21 writes one
    program change per part; parts that share a program share a MIDI channel, which is harmless.
    """
    from music21 import instrument

    cut = excerpt(score, max_seconds)
    parts = list(cut.parts)
    if len(parts) != len(programs):
        raise ValueError(f"{len(programs)} programs for a score of {len(parts)} parts")
    for old in list(cut.recurse().getElementsByClass(instrument.Instrument)):
        old.activeSite.remove(old)
    for part, program in zip(parts, programs, strict=True):
        player = instrument.Instrument()
        player.midiProgram = int(program)
        part.insert(0, player)
    return cut


def _tinysoundfont() -> Any:
    """The tinysoundfont module (untyped, so it is handled as Any). Imported lazily, like music21:
    `split_of` must stay importable without the synthesis stack."""
    import tinysoundfont  # type: ignore[import-untyped]

    return tinysoundfont


def _events(cut: Any) -> list[Any]:
    from music21 import midi

    data = midi.translate.music21ObjectToMidiFile(cut).writestr()
    events = _tinysoundfont().midi.load_memory(data)
    return [event for event in events if event.channel != DRUM_CHANNEL]


def _merge_spans(spans: list[tuple[float, float]]) -> list[tuple[float, float]]:
    merged: list[tuple[float, float]] = []
    for start, end in sorted(spans):
        if merged and start - merged[-1][1] < ACTIVE_GAP_SECONDS:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def render_score(
    score: Any,
    programs: Sequence[int],
    *,
    max_seconds: float = MAX_SECONDS,
    peak_db: float = -1.0,
    soundfont: Path | None = None,
) -> Rendering:
    """Render the first `max_seconds` of `score` with GM program `programs[i]` on part i.

    Returns audio at SAMPLE_RATE, peak-normalised to `peak_db` dBFS. Octave shifts move a part
    into its instrument's range (a flute does not play a bass line at pitch).
    """
    import torch
    import torchaudio

    tinysoundfont = _tinysoundfont()
    NoteOn, NoteOff = tinysoundfont.midi.NoteOn, tinysoundfont.midi.NoteOff
    ProgramChange = tinysoundfont.midi.ProgramChange

    tempo = start_tempo(score)
    cut = assign_programs(score, programs, max_seconds)
    infos = part_infos(cut)
    events = _events(cut)

    # Which program each channel plays when, then octave shifts per program.
    channel_program: dict[int, int] = {}
    keys: dict[int, list[int]] = defaultdict(list)
    for event in events:
        if isinstance(event.action, ProgramChange):
            channel_program[event.channel] = event.action.program
        elif (
            isinstance(event.action, NoteOn) and event.action.velocity > 0 and event.t < max_seconds
        ):
            keys[channel_program.get(event.channel, 0)].append(event.action.key)
    shift = {program: _octave_shift(program, notes) for program, notes in keys.items()}

    # Note-offs go after note-ons of the same instant. MIDI files put a zero-length grace note's
    # off before its on as often as not, and TinySoundFont would then hold the note forever; a
    # repeated note is unaffected, because a note-off releases the oldest voice of its key.
    def order(event: Any) -> tuple[float, int]:
        action = event.action
        if isinstance(action, NoteOff) or (isinstance(action, NoteOn) and action.velocity == 0):
            return (event.t, 2)
        return (event.t, 1 if isinstance(action, NoteOn) else 0)

    events.sort(key=order)
    channel_program.clear()
    held: dict[tuple[int, int], deque[float]] = defaultdict(deque)  # (channel, key) -> starts
    spans: dict[int, list[tuple[float, float]]] = defaultdict(list)
    last_sound = 0.0
    kept = []
    for event in events:
        action = event.action
        if isinstance(action, NoteOn | NoteOff):
            program = channel_program.get(event.channel, 0)
            action.key = min(127, max(0, action.key + shift.get(program, 0)))
        if event.t >= max_seconds:
            continue
        if isinstance(action, ProgramChange):
            channel_program[event.channel] = action.program
        elif isinstance(action, NoteOn) and action.velocity > 0:
            held[event.channel, action.key].append(event.t)
        elif isinstance(action, NoteOn | NoteOff) and held[event.channel, action.key]:
            start = held[event.channel, action.key].popleft()
            spans[channel_program.get(event.channel, 0)].append((start, event.t))
            last_sound = max(last_sound, event.t)
        kept.append(event)
    truncated = False
    for (channel, _), starts in held.items():  # notes still on at the cut
        for start in starts:
            spans[channel_program.get(channel, 0)].append((start, max_seconds))
            truncated = True
    truncated = truncated or any(
        isinstance(e.action, NoteOn) and e.action.velocity > 0 and e.t >= max_seconds
        for e in events
    )
    if truncated:
        last_sound = max_seconds

    seconds = min(max_seconds, last_sound + RELEASE_SECONDS)
    synth = tinysoundfont.Synth(samplerate=SYNTH_RATE)
    sfid = synth.sfload(_soundfont_bytes(soundfont or soundfont_path()))
    for channel in range(16):
        if channel != DRUM_CHANNEL:
            synth.program_select(channel, sfid, 0, 0)  # GM default until a program change
    sequencer = tinysoundfont.Sequencer(synth)
    sequencer.add(kept)
    frames = int(seconds * SYNTH_RATE)
    stereo = np.frombuffer(synth.generate(frames), dtype=np.float32).reshape(-1, 2)
    mono = torch.from_numpy(stereo.mean(axis=1))
    audio = torchaudio.functional.resample(mono, SYNTH_RATE, SAMPLE_RATE).numpy()
    if truncated:
        fade = min(len(audio), int(FADE_SECONDS * SAMPLE_RATE))
        audio[len(audio) - fade :] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    peak = float(np.abs(audio).max()) if len(audio) else 0.0
    if peak > 0:
        audio *= 10 ** (peak_db / 20) / peak

    active = {program: _merge_spans(s) for program, s in spans.items() if s}
    return Rendering(
        samples=audio.astype(np.float32),
        programs=tuple(sorted(active)),
        sounding_parts=sum(1 for info in infos if info.first_note_s < max_seconds),
        tempo=tempo,
        truncated=truncated,
        active=active,
    )


def _octave_shift(program: int, keys: Sequence[int]) -> int:
    """Semitones (a multiple of 12) that bring the median key into the program's range."""
    cls = class_of_program(program)
    if cls is None or not keys:
        return 0
    median = float(np.median(keys))
    if median < cls.low:
        return 12 * math.ceil((cls.low - median) / 12)
    if median > cls.high:
        return -12 * math.ceil((median - cls.high) / 12)
    return 0


# ---------------------------------------------------------------------------------------------
# Labels
# ---------------------------------------------------------------------------------------------


def labels_for(rendering: Rendering) -> dict[str, int]:
    """Tag -> 0/1: every INSTRUMENT_TAGS tag and "solo" always; "fast"/"slow" only when clear.

    "solo" means one player: one instrument that is not a section or choir, playing a single part,
    or several parts if one player can (a four-part chorale on one piano is solo piano; on four
    violins it is not).
    """
    classes = [class_of_program(program) for program in rendering.programs]
    tags = {tag for cls in classes if cls is not None for tag in cls.tags}
    labels = {tag: int(tag in tags) for tag in INSTRUMENT_TAGS}
    [only] = classes if len(classes) == 1 else [None]
    solo = (
        only is not None
        and not only.ensemble
        and (rendering.sounding_parts == 1 or only.polyphonic)
    )
    labels["solo"] = int(solo)
    if rendering.tempo.marked and rendering.tempo.quarter_bpm >= FAST_BPM:
        labels |= {"fast": 1, "slow": 0}
    elif rendering.tempo.marked and rendering.tempo.quarter_bpm <= SLOW_BPM:
        labels |= {"fast": 0, "slow": 1}
    return labels


def active_tags(rendering: Rendering) -> dict[str, list[list[float]]]:
    """Positive instrument tag -> merged [start_s, end_s] spans (rounded to 10 ms)."""
    spans: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for program, program_spans in rendering.active.items():
        cls = class_of_program(program)
        for tag in cls.tags if cls else ():
            spans[tag].extend(program_spans)
    return {
        tag: [[round(s, 2), round(e, 2)] for s, e in _merge_spans(v)]
        for tag, v in sorted(spans.items())
    }


# ---------------------------------------------------------------------------------------------
# Planning: which pieces, which programs
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Survey:
    """A candidate piece after parsing: usable or not, and what its parts are like."""

    piece: str
    ok: bool
    reason: str = ""
    parts: tuple[PartInfo, ...] = ()
    seconds: float = 0.0
    parse_s: float = 0.0


@dataclass(frozen=True)
class Job:
    piece: str
    variant: str
    programs: tuple[int, ...]
    peak_db: float

    @property
    def path(self) -> str:
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", self.piece.replace("/", "__"))
        return f"audio/{slug}__{self.variant}.flac"


def _rng(*key: object) -> random.Random:
    # Seeded from a string: stable across runs and Python versions, unlike hash().
    return random.Random(":".join(str(k) for k in key))


def interleaved_candidates(seed: int) -> Iterator[str]:
    """Candidate pieces, round-robin over collections so 1300 Palestrina movements and 1000 fiddle
    tunes do not crowd out the 26 Beethoven quartets. Opus files yield one random score each."""
    rng = _rng("candidates", seed)
    by_collection: dict[str, list[str]] = defaultdict(list)
    for piece in candidate_pieces():
        by_collection[piece.split("/")[0]].append(piece)
    queues = []
    for name in sorted(by_collection):
        pieces = by_collection[name]
        rng.shuffle(pieces)
        queues.append(pieces)
    rng.shuffle(queues)
    while queues:
        for queue in list(queues):
            yield queue.pop()
            if not queue:
                queues.remove(queue)


def _length_s(score: Any) -> float:
    return seconds_at(score, float(score.highestTime))


def survey(piece_path: str, seed: int, min_seconds: float, max_seconds: float) -> Survey:
    """Parse a corpus file and decide whether (and which score of it) is worth rendering."""
    from music21 import stream

    start = time.perf_counter()
    try:
        parsed = _parse(piece_path)
        piece, score = piece_path, parsed
        if isinstance(parsed, stream.Opus):
            # Folk-song collections hold hundreds of tunes, most of them short: take the first
            # long enough one in a seeded order.
            scores = list(parsed.scores)
            order = _rng(piece_path, seed).sample(range(len(scores)), len(scores))
            index = next((i for i in order if _length_s(scores[i]) >= min_seconds), order[0])
            piece, score = f"{piece_path}#{index}", scores[index]
        seconds = _length_s(score)
        if seconds < min_seconds:
            return Survey(
                piece,
                False,
                f"short: {seconds:.0f} s < {min_seconds:.0f} s",
                parse_s=time.perf_counter() - start,
            )
        infos = part_infos(excerpt(score, max_seconds))
    except Exception as error:  # music21 raises many types on odd files; a skip is the answer
        return Survey(
            piece_path,
            False,
            f"error: {type(error).__name__}: {error}"[:200],
            parse_s=time.perf_counter() - start,
        )
    if not any(info.first_note_s < max_seconds for info in infos):
        return Survey(piece, False, "silent: no pitched notes", parse_s=time.perf_counter() - start)
    return Survey(piece, True, "", tuple(infos), seconds, time.perf_counter() - start)


class Deck:
    """Instrument classes dealt in shuffled rounds: each tagged class once per round, plus
    DISTRACTOR_CARDS random distractors, so counts stay balanced whatever the draw order."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.cards: list[InstrumentClass] = []

    def _refill(self) -> None:
        cards = list(TAGGED_CLASSES) + self.rng.sample(DISTRACTOR_CLASSES, DISTRACTOR_CARDS)
        self.rng.shuffle(cards)
        self.cards.extend(cards)

    def draw(self, count: int) -> list[InstrumentClass]:
        """`count` distinct classes, taken from the top of the deck."""
        drawn: list[InstrumentClass] = []
        while len(drawn) < count:
            if not self.cards:
                self._refill()
            index = next((i for i, c in enumerate(self.cards) if c not in drawn), None)
            if index is None:
                self._refill()
                continue
            drawn.append(self.cards.pop(index))
        return drawn


def mix_programs(parts: Sequence[PartInfo], deck: Deck, rng: random.Random) -> tuple[int, ...]:
    """Programs for a random ensemble: 1-3 instruments, matched to the parts by pitch.

    The parts (silent ones aside) are sorted by median pitch and split into contiguous groups;
    the lowest group gets the instrument with the lowest range, and so on up.
    """
    playing = [i for i, info in enumerate(parts) if not math.isnan(info.median_pitch)]
    count = min(len(playing), rng.choices((1, 2, 3), weights=(0.3, 0.4, 0.3))[0])
    classes = sorted(deck.draw(max(1, count)), key=lambda cls: cls.centre)
    order = sorted(playing, key=lambda i: parts[i].median_pitch)
    programs = [rng.choice(classes[0].programs)] * len(parts)
    chosen = [rng.choice(cls.programs) for cls in classes]
    for rank, index in enumerate(order):
        programs[index] = chosen[rank * len(classes) // len(order)]
    return tuple(programs)


def plan(
    surveys: Iterable[Survey],
    seed: int,
    *,
    piano_fraction: float,
    heldout_mixes: int,
) -> list[Job]:
    """Jobs for the usable surveyed pieces, dealing instruments from one deck per split."""
    decks = {split: Deck(_rng("deck", seed, split)) for split in ("train", "valid", "test")}
    jobs = []
    for item in surveys:
        if not item.ok:
            continue
        split = split_of(item.piece)
        rng = _rng("programs", seed, item.piece)
        mixes = 1 if split == "train" else heldout_mixes
        for k in range(mixes):
            variant = "mix" if k == 0 else f"mix{k + 1}"
            programs = mix_programs(item.parts, decks[split], rng)
            jobs.append(Job(item.piece, variant, programs, rng.uniform(-9.0, -1.0)))
        if rng.random() < piano_fraction:
            program = rng.choice(PIANO.programs)
            jobs.append(Job(item.piece, "piano", (program,) * len(item.parts), rng.uniform(-9, -1)))
    return jobs


# ---------------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------------


@dataclass
class Rendered:
    job: Job
    samples: npt.NDArray[np.float32] | None
    row: dict[str, Any]
    seconds: float  # wall time spent


def run_job(job: Job, max_seconds: float) -> Rendered:
    """Parse, render and label one job (in a worker process when --workers > 1)."""
    start = time.perf_counter()
    try:
        score = load_score(job.piece)
        parse_s = time.perf_counter() - start
        rendering = render_score(score, job.programs, max_seconds=max_seconds, peak_db=job.peak_db)
    except Exception as error:  # a piece music21 parses but cannot export is skipped, not fatal
        log.warning("skipping %s (%s): %s: %s", job.piece, job.variant, type(error).__name__, error)
        return Rendered(job, None, {}, time.perf_counter() - start)
    metadata = score.metadata
    copyright_text = str(metadata.copyright) if metadata and metadata.copyright else ""
    row = {
        "path": job.path,
        "piece": job.piece,
        "split": split_of(job.piece),
        "variant": job.variant,
        "programs": list(rendering.programs),
        "part_programs": list(job.programs),
        "instruments": sorted(
            {cls.name for p in rendering.programs if (cls := class_of_program(p)) is not None}
        ),
        "labels": labels_for(rendering),
        "active": active_tags(rendering),
        "tempo_bpm": round(rendering.tempo.quarter_bpm, 2),
        "tempo_marked": rendering.tempo.marked,
        "duration_s": round(rendering.duration_s, 3),
        "soundfont": SOUNDFONT_NAME,
        "licence": f"{copyright_text} ({CORPUS_LICENCE})" if copyright_text else CORPUS_LICENCE,
        "composer": (metadata.composer if metadata else None) or None,
        "title": (metadata.title if metadata else None) or None,
        "parse_s": round(parse_s, 3),
    }
    return Rendered(job, rendering.samples, row, time.perf_counter() - start)


def _survey_task(args: tuple[str, int, float, float]) -> Survey:
    return survey(*args)


def _job_task(args: tuple[Job, float]) -> Rendered:
    return run_job(*args)


def _read_manifest(path: Path) -> dict[str, dict[str, Any]]:
    if not path.is_file():
        return {}
    rows = (json.loads(line) for line in path.read_text().splitlines() if line.strip())
    return {row["path"]: row for row in rows}


def _survey_params(seed: int, min_seconds: float, max_seconds: float) -> dict[str, Any]:
    from music21 import __version__ as music21_version

    return {"seed": seed, "min": min_seconds, "max": max_seconds, "music21": music21_version}


def survey_corpus(
    cache_path: Path,
    pieces: int,
    seed: int,
    min_seconds: float,
    max_seconds: float,
    mapped: Any = map,
) -> list[Survey]:
    """The first `pieces` usable candidates, in `interleaved_candidates` order.

    Surveys are cached in `cache_path` (one JSON line per corpus file, for these parameters), so
    a rerun does not parse the corpus again: parsing is most of the survey's cost.
    """
    from tqdm import tqdm

    params = _survey_params(seed, min_seconds, max_seconds)
    cached: dict[str, Survey] = {}
    if cache_path.is_file():
        for line in cache_path.read_text().splitlines():
            row = json.loads(line)
            if row.pop("params") == params:
                file = row.pop("file")
                parts = tuple(PartInfo(**part) for part in row.pop("parts"))
                cached[file] = Survey(**row, parts=parts)
    started = time.perf_counter()
    candidates = interleaved_candidates(seed)
    usable: list[Survey] = []
    surveyed: list[Survey] = []
    with tqdm(total=pieces, desc="survey", unit="piece") as bar, cache_path.open("a") as cache:
        while len(usable) < pieces:
            # One file per missing piece, at least 8 to keep workers busy (extras are cached).
            batch = list(itertools.islice(candidates, max(pieces - len(usable), 8)))
            if not batch:
                break
            fresh = [file for file in batch if file not in cached]
            tasks = [(file, seed, min_seconds, max_seconds) for file in fresh]
            for file, item in zip(fresh, mapped(_survey_task, tasks), strict=True):
                cached[file] = item
                row = {"file": file, "params": params, **dataclasses.asdict(item)}
                cache.write(json.dumps(row) + "\n")
            for file in batch:
                item = cached[file]
                surveyed.append(item)
                if item.ok and len(usable) < pieces:
                    usable.append(item)
                    bar.update()
    skipped = Counter(s.reason.split(":")[0] for s in surveyed if not s.ok)
    log.info(
        "surveyed %d files in %.0f s (%.0f s of parsing, cached or not): %d usable, skipped %s",
        len(surveyed),
        time.perf_counter() - started,
        sum(s.parse_s for s in surveyed),
        len(usable),
        dict(skipped),
    )
    return usable


def render_corpus(
    dest: Path,
    *,
    pieces: int,
    seed: int,
    workers: int = 1,
    min_seconds: float = MIN_SECONDS,
    max_seconds: float = MAX_SECONDS,
    piano_fraction: float = 0.3,
    heldout_mixes: int = 2,
) -> list[dict[str, Any]]:
    """Survey corpus pieces until `pieces` are usable, then render them into `dest`.

    Deterministic for a given seed; renders already in `dest/manifest.jsonl` are kept, so an
    interrupted run resumes. Returns the manifest rows of this plan.
    """
    import soundfile
    from tqdm import tqdm

    dest.mkdir(parents=True, exist_ok=True)
    (dest / "audio").mkdir(exist_ok=True)
    manifest_path = dest / "manifest.jsonl"
    done = _read_manifest(manifest_path)
    pool = ProcessPoolExecutor(workers) if workers > 1 else None

    def mapped(function: Any, items: Iterable[Any]) -> Iterator[Any]:
        return pool.map(function, items) if pool else map(function, items)

    try:
        usable = survey_corpus(
            dest / "survey.jsonl", pieces, seed, min_seconds, max_seconds, mapped
        )
        jobs = plan(usable, seed, piano_fraction=piano_fraction, heldout_mixes=heldout_mixes)
        todo = [job for job in jobs if not (job.path in done and (dest / job.path).is_file())]
        log.info("%d renders planned, %d already done", len(jobs), len(jobs) - len(todo))
        started = time.perf_counter()
        with manifest_path.open("a") as manifest:
            for result in tqdm(
                mapped(_job_task, [(job, max_seconds) for job in todo]),
                total=len(todo),
                desc="render",
                unit="render",
            ):
                if result.samples is None:
                    continue
                target = dest / result.job.path
                partial = target.with_suffix(".partial.flac")
                soundfile.write(partial, result.samples, SAMPLE_RATE, subtype="PCM_16")
                partial.replace(target)
                result.row["render_s"] = round(result.seconds, 3)
                manifest.write(json.dumps(result.row) + "\n")
                manifest.flush()
                done[result.job.path] = result.row
        log.info("rendered %d in %.0f s", len(todo), time.perf_counter() - started)
        # Rewrite once, so a render that was redone (its FLAC had gone) is listed once.
        partial = manifest_path.with_suffix(".partial")
        partial.write_text("".join(json.dumps(row) + "\n" for row in done.values()))
        partial.replace(manifest_path)
    finally:
        if pool:
            pool.shutdown(cancel_futures=True)
    return [done[job.path] for job in jobs if job.path in done]


def summarise(rows: Sequence[dict[str, Any]]) -> str:
    """Renders, hours and positives per tag per split, as a plain-text table."""
    splits = ("train", "valid", "test")
    tags = [*INSTRUMENT_TAGS, "solo", "fast", "slow"]
    count = Counter(row["split"] for row in rows)
    hours: dict[str, float] = defaultdict(float)
    positives: dict[str, Counter[str]] = defaultdict(Counter)
    for row in rows:
        hours[row["split"]] += row["duration_s"] / 3600
        for tag, value in row["labels"].items():
            positives[row["split"]][tag] += int(value)
    lines = [f"{'':12}" + "".join(f"{s:>8}" for s in splits)]
    lines.append(f"{'renders':12}" + "".join(f"{count[s]:>8}" for s in splits))
    lines.append(f"{'hours':12}" + "".join(f"{hours[s]:>8.2f}" for s in splits))
    pieces = {s: len({r["piece"] for r in rows if r["split"] == s}) for s in splits}
    lines.append(f"{'pieces':12}" + "".join(f"{pieces[s]:>8}" for s in splits))
    for tag in tags:
        lines.append(f"{tag:12}" + "".join(f"{positives[s][tag]:>8}" for s in splits))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--dest", type=Path, default=Path("data/rendered"))
    parser.add_argument("--pieces", type=int, default=120, help="usable corpus pieces to render")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--min-seconds", type=float, default=MIN_SECONDS)
    parser.add_argument("--max-seconds", type=float, default=MAX_SECONDS)
    parser.add_argument(
        "--piano-fraction",
        type=float,
        default=0.3,
        help="fraction of pieces also rendered as solo piano",
    )
    parser.add_argument(
        "--heldout-mixes",
        type=int,
        default=2,
        help="random-program renders per valid/test piece (train: 1)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    # music21 warns about every overfull measure of every encoding; the renders do not care.
    warnings.filterwarnings("ignore", module=r"music21\b")
    started = time.perf_counter()
    rows = render_corpus(
        args.dest,
        pieces=args.pieces,
        seed=args.seed,
        workers=args.workers,
        min_seconds=args.min_seconds,
        max_seconds=args.max_seconds,
        piano_fraction=args.piano_fraction,
        heldout_mixes=args.heldout_mixes,
    )
    print(summarise(rows))
    total = sum(row["duration_s"] for row in rows)
    print(
        f"{len(rows)} renders, {total / 3600:.2f} h of audio, "
        f"{time.perf_counter() - started:.0f} s wall time"
    )


if __name__ == "__main__":
    main()
