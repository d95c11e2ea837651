"""music21 scores: loading corpus pieces, their tempo, cutting excerpts and describing parts."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from training.distill.render.programs import SKIPPED_COLLECTIONS, SKIPPED_SUFFIXES


def corpus_root() -> Path:
    from music21 import corpus

    # Resolved: a virtual environment reached through a symlink lists its corpus paths resolved.
    return Path(corpus.__file__).resolve().parent


def candidate_pieces() -> list[str]:
    """Corpus paths (relative, POSIX) of the core corpus files that are playable scores."""
    from music21 import corpus

    root = corpus_root()
    found = []
    for path in corpus.getCorePaths():
        rel = Path(path).resolve().relative_to(root)
        if rel.parts[0] in SKIPPED_COLLECTIONS or rel.suffix in SKIPPED_SUFFIXES:
            continue
        found.append(rel.as_posix())
    return sorted(found)


def parse(path: str) -> Any:
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
    return _pick(parse(path), path, index)


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
