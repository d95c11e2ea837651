"""Planning: surveying pieces and dealing GM programs to them, one deck per split."""

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
    DISTRACTOR_CARDS,
    DISTRACTOR_CLASSES,
    PIANO,
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
