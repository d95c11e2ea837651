"""Planning: surveying pieces and dealing GM programs, soundfonts and drums to them, per split."""

from __future__ import annotations

import math
import random
import re
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from training.distill.render.programs import (
    CHOIR,
    DISTRACTOR_CARDS,
    DISTRACTOR_CLASSES,
    PIANO,
    SOLO_VOICE,
    TAGGED_CLASSES,
    InstrumentClass,
    split_of,
)
from training.distill.render.scores import (
    PartInfo,
    candidate_pieces,
    excerpt,
    parse,
    part_infos,
    seconds_at,
)
from training.distill.render.soundfonts import SOUNDFONTS


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
    """One render: a piece, its variant name, a program per part, and how it is played.

    Variants: "mix", "mix2", ... (random programs from the deck), "piano" (every part on one
    piano), "choir" (every part on one choir program), "vox" (the highest part sung by Solo Vox,
    the rest on one instrument from the deck, or a cappella for a one-part tune).
    """

    piece: str
    variant: str
    programs: tuple[int, ...]
    peak_db: float
    soundfont: str = SOUNDFONTS[0].name
    drums: bool = False

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


# Vocal music with one part per voice: Bach's four-part chorales (bwvNNN.M, the chorale movements
# of the cantatas and the chorale collection), Palestrina's masses and Monteverdi's madrigals.
_CHORALE = re.compile(r"bach/bwv\d+\.\d+\.mxl")
CHORAL_COLLECTIONS = ("palestrina", "monteverdi")


def choral_candidates(seed: int) -> Iterator[str]:
    """Choral pieces in a seeded order: two Bach chorales, then one Palestrina movement and one
    Monteverdi madrigal in turn, so the choir renders are mostly chorales but not only."""
    rng = _rng("choral", seed)
    pieces = candidate_pieces()
    queues = [
        [p for p in pieces if _CHORALE.fullmatch(p)],
        *([p for p in pieces if p.split("/")[0] == name] for name in CHORAL_COLLECTIONS),
    ]
    for queue in queues:
        rng.shuffle(queue)
    pattern = (0, 0, 1, 0, 0, 2)
    while any(queues):
        for index in pattern:
            if queues[index]:
                yield queues[index].pop()


def _length_s(score: Any) -> float:
    return seconds_at(score, float(score.highestTime))


def survey(piece_path: str, seed: int, min_seconds: float, max_seconds: float) -> Survey:
    """Parse a corpus file and decide whether (and which score of it) is worth rendering."""
    from music21 import stream

    start = time.perf_counter()
    try:
        parsed = parse(piece_path)
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


class Rotation:
    """Names dealt in shuffled rounds (every name once per round), so counts stay balanced."""

    def __init__(self, names: Sequence[str], rng: random.Random) -> None:
        self.names = list(names)
        self.rng = rng
        self.queue: list[str] = []

    def next(self) -> str:
        if not self.queue:
            self.queue = self.rng.sample(self.names, len(self.names))
        return self.queue.pop()


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


def _accompaniment(deck: Deck) -> InstrumentClass:
    """An instrument from the deck that is not itself a voice (a singer over a choir is no solo)."""
    while True:
        [cls] = deck.draw(1)
        if not cls.voice:
            return cls


def vox_programs(parts: Sequence[PartInfo], deck: Deck, rng: random.Random) -> tuple[int, ...]:
    """Solo Vox on the highest part, one accompanying instrument on every other part."""
    playing = [i for i, info in enumerate(parts) if not math.isnan(info.median_pitch)]
    top = max(playing, key=lambda i: parts[i].median_pitch) if playing else 0
    if len(playing) <= 1:
        return tuple(SOLO_VOICE.programs[0] for _ in parts)
    program = rng.choice(_accompaniment(deck).programs)
    return tuple(SOLO_VOICE.programs[0] if i == top else program for i in range(len(parts)))


def plan(
    surveys: Iterable[Survey],
    seed: int,
    *,
    piano_fraction: float,
    heldout_mixes: int,
    vox_fraction: float = 0.0,
    drum_fraction: float = 0.0,
    choral: Iterable[Survey] = (),
    soundfonts: Sequence[str] = (SOUNDFONTS[0].name,),
) -> list[Job]:
    """Jobs for the usable surveyed pieces, dealing instruments from one deck per split.

    Every piece of `surveys` gets one random mix (held-out pieces `heldout_mixes`), a solo piano
    render with probability `piano_fraction` and a "vox" render with probability `vox_fraction`.
    Every piece of `choral` gets a "choir" render and a "vox" render. Random mixes and vox renders
    get drums with probability `drum_fraction`; choirs and solo piano never do. Soundfonts are
    dealt in shuffled rounds per split, so each split hears each soundfont about equally often.
    """
    splits = ("train", "valid", "test")
    decks = {split: Deck(_rng("deck", seed, split)) for split in splits}
    fonts = {split: Rotation(soundfonts, _rng("soundfonts", seed, split)) for split in splits}
    jobs: list[Job] = []

    def add(item: Survey, variant: str, programs: tuple[int, ...], rng: random.Random) -> None:
        split = split_of(item.piece)
        drums = variant.startswith(("mix", "vox")) and rng.random() < drum_fraction
        peak_db = rng.uniform(-9.0, -1.0)
        jobs.append(Job(item.piece, variant, programs, peak_db, fonts[split].next(), drums))

    for item in surveys:
        if not item.ok:
            continue
        split = split_of(item.piece)
        rng = _rng("programs", seed, item.piece)
        mixes = 1 if split == "train" else heldout_mixes
        for k in range(mixes):
            variant = "mix" if k == 0 else f"mix{k + 1}"
            add(item, variant, mix_programs(item.parts, decks[split], rng), rng)
        if rng.random() < piano_fraction:
            program = rng.choice(PIANO.programs)
            add(item, "piano", (program,) * len(item.parts), rng)
        if rng.random() < vox_fraction:
            add(item, "vox", vox_programs(item.parts, decks[split], rng), rng)
    for item in choral:
        if not item.ok:
            continue
        split = split_of(item.piece)
        rng = _rng("choral", seed, item.piece)
        add(item, "choir", (rng.choice(CHOIR.programs),) * len(item.parts), rng)
        add(item, "vox", vox_programs(item.parts, decks[split], rng), rng)
    # A chorale both surveyed and choral keeps its first "vox" render only.
    seen: set[str] = set()
    unique = []
    for job in jobs:
        if job.path not in seen:
            seen.add(job.path)
            unique.append(job)
    return unique
