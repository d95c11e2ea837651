"""Synthesis: a score with GM programs played through tinysoundfont into a 16 kHz waveform."""

from __future__ import annotations

import math
import random
from collections import defaultdict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from training.distill.render.drums import HIT_SECONDS, DrumPart, drum_hits
from training.distill.render.programs import (
    ACTIVE_GAP_SECONDS,
    DRUM_CHANNEL,
    FADE_SECONDS,
    MAX_SECONDS,
    RELEASE_SECONDS,
    SAMPLE_RATE,
    SYNTH_RATE,
    class_of_program,
)
from training.distill.render.scores import Tempo, excerpt, part_infos, start_tempo
from training.distill.render.soundfonts import bundled_soundfont_path


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
        notes: Program -> (start_s, end_s, MIDI key as played, after octave shifts) of every
            note, for ground truth finer than tags (the evidence-map measurement).
        drums: The drum part that plays, or None.
        drum_active: Merged [start_s, end_s] spans where the drums sound.
        drum_hits: How many drum hits sound.
    """

    samples: npt.NDArray[np.float32]
    programs: tuple[int, ...]
    sounding_parts: int
    tempo: Tempo
    truncated: bool
    active: dict[int, list[tuple[float, float]]] = field(default_factory=dict)
    notes: dict[int, list[tuple[float, float, int]]] = field(default_factory=dict)
    drums: DrumPart | None = None
    drum_active: list[tuple[float, float]] = field(default_factory=list)
    drum_hits: int = 0

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


@cache
def _synth(path: Path) -> tuple[Any, int]:
    """One synthesiser per soundfont and process: MuseScore_General (490 MB) takes seconds to load,
    longer than most renders."""
    synth = _tinysoundfont().Synth(samplerate=SYNTH_RATE)
    return synth, synth.sfload(str(path))


def _fresh_synth(path: Path) -> tuple[Any, int]:
    """The cached synthesiser of `path`, silent, with every channel reset."""
    synth, sfid = _synth(path)
    synth.callback = None
    synth.soundfonts[sfid].reset()
    # A reset ends the last render's voices with a few-millisecond fade: play it out unheard.
    synth.generate(SYNTH_RATE // 10)
    return synth, sfid


def merge_spans(spans: list[tuple[float, float]]) -> list[tuple[float, float]]:
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
    drums: DrumPart | None = None,
    drum_seed: str = "",
) -> Rendering:
    """Render the first `max_seconds` of `score` with GM program `programs[i]` on part i.

    Returns audio at SAMPLE_RATE, peak-normalised to `peak_db` dBFS. Octave shifts move a part
    into its instrument's range (a flute does not play a bass line at pitch). `soundfont` is an
    .sf2 path (default: TimGM6mb); `drums` adds a generated drum part on the percussion channel,
    humanised by a generator seeded with `drum_seed`.
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
    notes: dict[int, list[tuple[float, float, int]]] = defaultdict(list)
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
            notes[channel_program.get(event.channel, 0)].append((start, event.t, action.key))
            last_sound = max(last_sound, event.t)
        kept.append(event)
    truncated = False
    for (channel, key), starts in held.items():  # notes still on at the cut
        for start in starts:
            spans[channel_program.get(channel, 0)].append((start, max_seconds))
            notes[channel_program.get(channel, 0)].append((start, max_seconds, key))
            truncated = True
    truncated = truncated or any(
        isinstance(e.action, NoteOn) and e.action.velocity > 0 and e.t >= max_seconds
        for e in events
    )
    if truncated:
        last_sound = max_seconds

    hits = drum_hits(cut, drums, max_seconds, random.Random(drum_seed)) if drums else []
    Event = tinysoundfont.midi.Event
    for hit in hits:
        kept.append(Event(NoteOn(hit.key, hit.velocity), hit.t, DRUM_CHANNEL))
        kept.append(Event(NoteOff(hit.key), hit.t + HIT_SECONDS, DRUM_CHANNEL))
    kept.sort(key=order)
    drum_active = merge_spans([(hit.t, min(max_seconds, hit.span_end)) for hit in hits])
    if drum_active:
        last_sound = max(last_sound, drum_active[-1][1])

    seconds = min(max_seconds, last_sound + RELEASE_SECONDS)
    synth, sfid = _fresh_synth(soundfont or bundled_soundfont_path())
    for channel in range(16):
        if channel != DRUM_CHANNEL:
            synth.program_select(channel, sfid, 0, 0)  # GM default until a program change
    if drums:
        synth.program_select(DRUM_CHANNEL, sfid, 128, drums.kit.preset, is_drums=True)
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

    active = {program: merge_spans(s) for program, s in spans.items() if s}
    return Rendering(
        samples=audio.astype(np.float32),
        programs=tuple(sorted(active)),
        sounding_parts=sum(1 for info in infos if info.first_note_s < max_seconds),
        tempo=tempo,
        truncated=truncated,
        active=active,
        notes={program: sorted(n) for program, n in notes.items() if program in active},
        drums=drums if hits else None,
        drum_active=drum_active,
        drum_hits=len(hits),
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
