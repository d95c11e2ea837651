"""Rendered music with true instrument labels: music21 corpus pieces played by random GM programs.

Each piece of the music21 corpus is cut to its first `max_seconds`, its parts are given General
MIDI programs from a fixed table, and it is synthesised offline with tinysoundfont and the
TimGM6mb soundfont that ships inside `pretty_midi`. The labels come from the MIDI events that
really sound, so a render of a piano+flute duo is piano=1, flute=1 and violin=cello=...=0.

    python -m training render --dest data/rendered --pieces 120 --seed 0 [--workers 1]

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

Modules: `programs` (instrument classes and GM tables), `scores` (music21 scores), `synth`
(tinysoundfont synthesis), `labels`, `survey` (planning), `pool` (running jobs, caches),
`cli`.

Reruns keep what `manifest.jsonl` lists; delete `dest` after changing the tables below.

Programs are dealt from one shuffled deck per split, so every instrument class gets about the same
number of renders in train, valid and test; the parts are matched to the instruments by pitch
(the lowest part gets the lowest instrument). A fraction of pieces is also rendered as solo piano
so the piano tag has plenty of positives. Genre tags are left to the teacher: a Bach chorale on a
sitar is not "classical" in the sense MagnaTagATune annotators used.
"""

from __future__ import annotations

from training.distill.render.cli import (
    main,
)
from training.distill.render.drums import (
    DrumPart,
    choose_drums,
    drum_hits,
)
from training.distill.render.labels import (
    active_tags,
    labels_for,
)
from training.distill.render.pool import (
    Rendered,
    render_corpus,
    run_job,
    summarise,
    survey_corpus,
    voice_of,
)
from training.distill.render.programs import (
    ACTIVE_GAP_SECONDS,
    ALL_CLASSES,
    CHOIR,
    CORPUS_LICENCE,
    DISTRACTOR_CARDS,
    DISTRACTOR_CLASSES,
    DRUM_CHANNEL,
    DRUM_KITS,
    FADE_SECONDS,
    FAST_BPM,
    INSTRUMENT_TAGS,
    MAX_SECONDS,
    MIN_SECONDS,
    NO_VOICE_TAGS,
    PIANO,
    RELEASE_SECONDS,
    SAMPLE_RATE,
    SLOW_BPM,
    SOLO_TAG,
    SOLO_VOICE,
    SYNTH_RATE,
    TAGGED_CLASSES,
    VOICE_TAGS,
    DrumKit,
    InstrumentClass,
    Split,
    class_of_program,
    split_of,
)
from training.distill.render.scores import (
    PartInfo,
    Tempo,
    candidate_pieces,
    corpus_root,
    excerpt,
    load_score,
    offset_at,
    part_infos,
    seconds_at,
    start_tempo,
)
from training.distill.render.soundfonts import (
    FLUIDR3,
    MUSESCORE,
    SOUNDFONT_BY_NAME,
    SOUNDFONTS,
    TIMGM6MB,
    Soundfont,
    bundled_soundfont_path,
    cached_path,
    fetch_soundfont,
)
from training.distill.render.survey import (
    Deck,
    Job,
    Rotation,
    Survey,
    choral_candidates,
    interleaved_candidates,
    mix_programs,
    plan,
    survey,
    vox_programs,
)
from training.distill.render.synth import (
    Rendering,
    assign_programs,
    render_score,
)

__all__ = [
    "ACTIVE_GAP_SECONDS",
    "ALL_CLASSES",
    "CHOIR",
    "CORPUS_LICENCE",
    "DISTRACTOR_CARDS",
    "DISTRACTOR_CLASSES",
    "DRUM_CHANNEL",
    "DRUM_KITS",
    "FADE_SECONDS",
    "FAST_BPM",
    "FLUIDR3",
    "INSTRUMENT_TAGS",
    "MAX_SECONDS",
    "MIN_SECONDS",
    "MUSESCORE",
    "NO_VOICE_TAGS",
    "PIANO",
    "RELEASE_SECONDS",
    "SAMPLE_RATE",
    "SLOW_BPM",
    "SOLO_TAG",
    "SOLO_VOICE",
    "SOUNDFONTS",
    "SOUNDFONT_BY_NAME",
    "SYNTH_RATE",
    "TAGGED_CLASSES",
    "TIMGM6MB",
    "VOICE_TAGS",
    "Deck",
    "DrumKit",
    "DrumPart",
    "InstrumentClass",
    "Job",
    "PartInfo",
    "Rendered",
    "Rendering",
    "Rotation",
    "Soundfont",
    "Split",
    "Survey",
    "Tempo",
    "active_tags",
    "assign_programs",
    "bundled_soundfont_path",
    "cached_path",
    "candidate_pieces",
    "choose_drums",
    "choral_candidates",
    "class_of_program",
    "corpus_root",
    "drum_hits",
    "excerpt",
    "fetch_soundfont",
    "interleaved_candidates",
    "labels_for",
    "load_score",
    "main",
    "mix_programs",
    "offset_at",
    "part_infos",
    "plan",
    "render_corpus",
    "render_score",
    "run_job",
    "seconds_at",
    "split_of",
    "start_tempo",
    "summarise",
    "survey",
    "survey_corpus",
    "voice_of",
    "vox_programs",
]
