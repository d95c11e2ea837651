"""Drum parts: a steady GM-percussion pattern generated from an excerpt's bars, meter and tempo.

The pattern follows each bar's time signature (a backbeat in 2/4 and 4/4, a waltz in 3/4, two or
four dotted beats in 6/8 and 12/8, one accented beat otherwise) and the score's tempo marks, so the
hits land on the music's beats. The drums come in after a bar or more of the piece alone and may
stop before the end, so the `active` spans of `mtt/drums` have windows on both sides.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from training.distill.render.programs import DRUM_KITS, DrumKit
from training.distill.render.scores import _tempo_segments

KICK, SIDE_STICK, SNARE, CLOSED_HAT, PEDAL_HAT, CRASH, RIDE = 36, 37, 38, 42, 44, 49, 51
HIT_SECONDS = 0.2  # note-off after each hit; GM drum samples ring out on their own
# How long a hit counts as sounding for the active spans: a span is the time from the first hit
# to just after the last one, with rests shorter than ACTIVE_GAP_SECONDS bridged as elsewhere.
# Crash and ride cymbals ring for seconds after the part stops (measured in MuseScore_General).
HIT_SPAN_SECONDS = 0.3
CYMBAL_SPAN_SECONDS = 3.0


@dataclass(frozen=True)
class DrumPart:
    """Which kit plays, from which bar (0-based, of the first part), and until when."""

    kit: DrumKit
    start_bar: int
    stop_s: float | None = None  # the drums stop at the first bar starting at or after this


@dataclass(frozen=True)
class Hit:
    t: float  # seconds
    key: int
    velocity: int

    @property
    def span_end(self) -> float:
        return self.t + (CYMBAL_SPAN_SECONDS if self.key in (CRASH, RIDE) else HIT_SPAN_SECONDS)


def choose_drums(quarter_bpm: float, rng: random.Random, max_seconds: float) -> DrumPart:
    """A kit that suits the tempo, an entry after 1-3 bars, and a stop before the end 30% of the
    time."""
    names = (
        ("brush", "jazz", "room")
        if quarter_bpm < 80
        else ("power", "electronic", "standard")
        if quarter_bpm > 130
        else ("standard", "room", "jazz", "power")
    )
    kits = [kit for kit in DRUM_KITS if kit.name in names]
    stop_s = rng.uniform(0.55, 0.85) * max_seconds if rng.random() < 0.3 else None
    return DrumPart(rng.choice(kits), rng.randint(1, 3), stop_s)


def _bar_pattern(numerator: int, denominator: int) -> list[tuple[float, int, int]]:
    """(offset in quarters, key, velocity) of one bar's hits, before swing and humanising."""
    beat = 4.0 / denominator
    hits: list[tuple[float, int, int]] = []
    if denominator == 8 and numerator in (6, 9, 12):
        beats = numerator // 3
        for k in range(beats):
            hits.append((k * 3 * beat, KICK if k % 2 == 0 else SNARE, 96 if k == 0 else 84))
        hits += [(i * beat, CLOSED_HAT, 70 if i % 3 == 0 else 55) for i in range(numerator)]
    elif numerator in (2, 4):
        for k in range(numerator):
            hits.append((k * beat, KICK if k % 2 == 0 else SNARE, 96 if k == 0 else 86))
        hits += [(i * beat / 2, CLOSED_HAT, 70 if i % 2 == 0 else 52) for i in range(2 * numerator)]
    elif numerator == 3:
        hits.append((0.0, KICK, 96))
        hits += [(k * beat, SIDE_STICK, 70) for k in (1, 2)]
        hits += [(i * beat / 2, CLOSED_HAT, 66 if i % 2 == 0 else 50) for i in range(6)]
    else:
        hits.append((0.0, KICK, 96))
        hits.append(((numerator - 1) * beat, SNARE, 84))
        hits += [(k * beat, CLOSED_HAT, 66) for k in range(numerator)]
    return hits


def _seconds(segments: list[tuple[float, float, float]], offset: float) -> float:
    seconds = 0.0
    for start, end, bpm in segments:
        if offset <= start:
            break
        seconds += (min(end, offset) - start) * 60.0 / bpm
    return seconds


def drum_hits(cut: Any, part: DrumPart, max_seconds: float, rng: random.Random) -> list[Hit]:
    """The hits of `part` over the bars of `cut` (an excerpt), in seconds, before `max_seconds`."""
    from music21 import meter, stream

    parts = list(cut.parts)
    if not parts:
        return []
    measures = list(parts[0].getElementsByClass(stream.Measure))
    segments = _tempo_segments(cut)
    signature = meter.TimeSignature("4/4")
    brushes = part.kit.name in ("jazz", "brush")
    hits: list[Hit] = []
    for index, measure in enumerate(measures):
        if measure.timeSignature is not None:
            signature = measure.timeSignature
        if index < part.start_bar:
            continue
        start = float(measure.offset)
        if part.stop_s is not None and _seconds(segments, start) >= part.stop_s:
            break
        length = float(signature.barDuration.quarterLength)
        for offset, key, velocity in _bar_pattern(signature.numerator, signature.denominator):
            if offset >= length:
                continue
            if brushes and key == CLOSED_HAT:
                key = RIDE
            t = _seconds(segments, start + offset)
            if t >= max_seconds:
                continue
            hits.append(Hit(t, key, max(1, min(127, velocity + rng.randint(-8, 8)))))
    if hits:
        first = min(hit.t for hit in hits)
        hits.append(Hit(first, CRASH, 90))  # the entry
    return sorted(hits, key=lambda hit: (hit.t, hit.key))
