"""GM programs: the instrument classes, their tags, the soundfont and the held-out split."""

from __future__ import annotations

import hashlib
import importlib.util
import logging
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

from model.config import AudioConfig

log = logging.getLogger(__name__)

Split = Literal["train", "valid", "test"]

# Renders are heard at the rate every network reads.
SAMPLE_RATE = AudioConfig().sample_rate
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
SKIPPED_COLLECTIONS = frozenset({"demos", "theoryExercises", "leadSheet"})
SKIPPED_SUFFIXES = frozenset({".rntxt"})


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
def soundfont_bytes(path: Path) -> bytes:
    return path.read_bytes()
