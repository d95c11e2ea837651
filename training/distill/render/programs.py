"""GM programs: the instrument classes, their tags, the soundfont and the held-out split."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
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

# Collections that are test files, analyses or chord charts rather than playable scores.
SKIPPED_COLLECTIONS = frozenset({"demos", "theoryExercises", "leadSheet"})
SKIPPED_SUFFIXES = frozenset({".rntxt"})


# Tags every voice program makes positive: a singer is heard, whoever it is. "male"/"female" and
# the MSD vocalist tags stay unknown: a GM voice preset has no stable sex.
VOICE_TAGS: tuple[str, ...] = (
    "mtt/voice",
    "mtt/vocal",
    "mtt/vocals",
    "mtt/singing",
)
CHOIR_TAGS: tuple[str, ...] = ("mtt/choir", "mtt/choral")
# Positive exactly when no voice program sounds (and 0 in every voice render).
NO_VOICE_TAGS: tuple[str, ...] = (
    "mtt/no vocal",
    "mtt/no vocals",
    "mtt/no voice",
    "msd/instrumental",
)
DRUM_TAGS: tuple[str, ...] = ("mtt/drums",)
# The generated drum parts are a steady pattern from the first bar they play to the last, which is
# what MagnaTagATune's "beat"/"beats" describe; renders without drums have no beat instrument.
BEAT_TAGS: tuple[str, ...] = ("mtt/beat", "mtt/beats")


@dataclass(frozen=True)
class InstrumentClass:
    """A family of GM programs that sound like one instrument tag (or none: a distractor).

    Attributes:
        name: Short name, used in logs and statistics.
        programs: GM program numbers, 0-based (GM "Violin" 41 is 40 here).
        tags: Ids of the two-vocabulary model (`mtt/violin`, `msd/guitar`) that are positive when
            this class sounds.
        low, high: Comfortable MIDI pitch range; parts outside it are moved by octaves.
        polyphonic: One player can play several parts at once (a chorale on one piano is solo).
        ensemble: A section or choir, never a solo, even on a single melody.
        voice: A sung sound: the voice tags are positive and the "no vocal(s)" tags 0.
    """

    name: str
    programs: tuple[int, ...]
    tags: tuple[str, ...]
    low: int
    high: int
    polyphonic: bool = False
    ensemble: bool = False
    voice: bool = False

    @property
    def centre(self) -> float:
        return (self.low + self.high) / 2


TAGGED_CLASSES: tuple[InstrumentClass, ...] = (
    # Honky-tonk (3) and the electric pianos (4, 5) are left out: detuned or Rhodes-like
    # sounds that annotators may or may not call "piano".
    InstrumentClass("piano", (0, 1, 2), ("mtt/piano",), 21, 108, polyphonic=True),
    InstrumentClass("harpsichord", (6,), ("mtt/harpsichord",), 29, 89, polyphonic=True),
    InstrumentClass("violin", (40,), ("mtt/violin", "mtt/strings"), 55, 100),
    InstrumentClass("viola", (41,), ("mtt/strings",), 48, 88),
    InstrumentClass("cello", (42,), ("mtt/cello", "mtt/strings"), 36, 76),
    InstrumentClass("string ensemble", (48, 49), ("mtt/strings",), 28, 96, ensemble=True),
    InstrumentClass("harp", (46,), ("mtt/harp",), 24, 103, polyphonic=True),
    InstrumentClass("flute", (73,), ("mtt/flute",), 60, 96),
    InstrumentClass("sitar", (104,), ("mtt/sitar",), 48, 84),
    # "msd/acoustic" is left unknown: nylon and steel guitars are acoustic, but whether a whole
    # render is "acoustic" depends on every other instrument in it, which no table decides well.
    InstrumentClass("guitar", (24, 25), ("mtt/guitar", "msd/guitar"), 40, 84, polyphonic=True),
    # Choir Aahs and Voice Oohs are both a group of singers in all three soundfonts.
    InstrumentClass(
        "choir", (52, 53), (*CHOIR_TAGS, *VOICE_TAGS), 40, 81, ensemble=True, voice=True
    ),
    InstrumentClass("synth", (80, 81, 89, 90), ("mtt/synth",), 36, 96, polyphonic=True),
)
PIANO = TAGGED_CLASSES[0]
CHOIR = TAGGED_CLASSES[10]
# One singer (GM 86 Solo Vox): a voice but not a choir. It never enters the random deck, where it
# could be dealt several parts at once; the "vox" variant gives it exactly one part.
SOLO_VOICE = InstrumentClass("solo voice", (85,), VOICE_TAGS, 48, 79, voice=True)

# Instruments with no tag: they make the model tell "a melody instrument" from "a flute".
# Recorder and pan flute are left out (too close to "flute"), as are contrabass and pizzicato or
# tremolo strings (they would need "strings" but not reliably sound like it in every soundfont).
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
ALL_CLASSES = (*TAGGED_CLASSES, SOLO_VOICE, *DISTRACTOR_CLASSES)
# The deck holds every tagged class once and this many distractor cards per round.
DISTRACTOR_CARDS = 3

# Every tag a render is labelled with, 0 or 1 (plus "mtt/solo", and the tempo tags when clear).
INSTRUMENT_TAGS: tuple[str, ...] = tuple(
    dict.fromkeys(
        [
            *(tag for cls in ALL_CLASSES for tag in cls.tags),
            *NO_VOICE_TAGS,
            *DRUM_TAGS,
            *BEAT_TAGS,
        ]
    )
)
SOLO_TAG = "mtt/solo"
FAST_TAG = "mtt/fast"
SLOW_TAG = "mtt/slow"


@dataclass(frozen=True)
class DrumKit:
    """A GM drum kit: a preset of bank 128, played on the percussion channel."""

    name: str
    preset: int


# The kits every soundfont here has (bank 128). Brush and Jazz suit slow pieces, Power and
# Electronic fast ones; Standard and Room anything.
DRUM_KITS: tuple[DrumKit, ...] = (
    DrumKit("standard", 0),
    DrumKit("room", 8),
    DrumKit("power", 16),
    DrumKit("electronic", 24),
    DrumKit("jazz", 32),
    DrumKit("brush", 40),
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
