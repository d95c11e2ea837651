"""Rendered music with true labels: music21 corpus pieces played by GM programs, voices and drums.

Each piece of the music21 corpus is cut to its first `max_seconds`, its parts are given General
MIDI programs from a fixed table, and it is synthesised offline with tinysoundfont through one of
three GM soundfonts: TimGM6mb (GPL-2, inside `pretty_midi`), FluidR3_GM (MIT, Debian
`fluid-soundfont-gm`) and MuseScore_General (MIT, parts CC0/PD, Debian
`musescore-general-soundfont-lossless`); the Debian ones are fetched by this step into
`<dest>/soundfonts/` (only the .sf2 and the copyright file are kept). All three are sf2. The labels
come from the MIDI events that really sound, so a render of a piano+flute duo is piano=1, flute=1
and violin=cello=...=0.

    python -m training render --dest data/rendered [--pieces 120] [--choral-pieces 50] [--seed 0]
        [--vox-fraction 0.15] [--drum-fraction 0.35] [--soundfonts ...] [--workers 1]

Output, under `dest`:
    audio/<piece>__<variant>.flac   16 kHz mono FLAC, at most `max_seconds` long
    manifest.jsonl                  one object per render:
        path        FLAC path relative to `dest`
        piece       corpus path (plus "#k" for the k-th score of an opus): the held-out unit
        split       `split_of(piece)`
        variant     "mix", "mix2", ... (random programs), "piano" (every part on a piano),
                    "choir" (every part on Choir Aahs or Voice Oohs), "vox" (Solo Vox on the
                    highest part, one instrument on the others; a one-part tune a cappella)
        programs    GM programs (0-based) that sound in the render; part_programs: one per part
        instruments instrument classes that sound
        voice       "choir", "solo voice" or null
        drums       drum kit of the generated drum part ("standard", "jazz", ...) or null;
                    drum_start_bar (0-based bar it enters on), drum_hits
        label_keys  "tag id": labels and active are keyed by the two-vocabulary ids of
                    model/tags.py (`mtt/piano`, `msd/instrumental`); older manifests used bare
                    MTT names
        labels      tag id -> 0/1 for every tag in INSTRUMENT_TAGS plus "mtt/solo"; "mtt/fast"
                    and "mtt/slow" only when the score marks a clearly fast (>= 140) or slow
                    (<= 70) quarter BPM. Tags not listed are unknown.
        active      positive instrument, voice and drum tag -> [[start_s, end_s], ...] where it
                    sounds, for window-level labels (rests longer than a second split the spans;
                    the "no vocal(s)" tags hold for the whole render and have no spans)
        tempo_bpm, tempo_marked, duration_s, composer, title, parse_s, render_s
        soundfont, soundfont_package, soundfont_licence   which soundfont played, and its licence
        licence     the score's licence (music21 corpus)
    survey.jsonl                    parsed-corpus cache: a rerun resumes without parsing again
    soundfonts/<package>/...        the fetched Debian soundfonts and their copyright files

Modules: `programs` (instrument classes, tag ids and GM tables), `soundfonts` (the soundfonts and
fetching them), `scores` (music21 scores), `drums` (generated drum parts), `synth` (tinysoundfont
synthesis), `labels`, `survey` (planning), `pool` (running jobs, caches), `cli`.

Reruns keep what `manifest.jsonl` lists; delete `dest` (but keep `dest/soundfonts`) after
changing the tables.

Programs are dealt from one shuffled deck per split, so every instrument class gets about the same
number of renders in train, valid and test; the parts are matched to the instruments by pitch
(the lowest part gets the lowest instrument). Soundfonts are dealt the same way, in shuffled
rounds per split. A fraction of pieces is also rendered as solo piano so the piano tag has plenty
of positives. Genre tags are left to the teacher: a Bach chorale on a sitar is not "classical" in
the sense MagnaTagATune annotators used.

Voices: choral pieces (Bach's four-part chorales first, then Palestrina and Monteverdi) are each
rendered as a choir and with a solo voice over an instrument; a share of the other pieces gets a
solo-voice render too. Any voice program makes `mtt/voice`, `vocal`, `vocals`, `singing` 1 and
`mtt/no vocal`, `no vocals`, `no voice` and `msd/instrumental` 0; without one it is the other way
round. Only Choir Aahs and Voice Oohs (ensembles in all three soundfonts) make `mtt/choir` and
`mtt/choral` 1: Solo Vox is one singer, never dealt more than one part, so it is no choir (0).
The sex of a GM voice is not stable across soundfonts, so `male`/`female` stay unknown.

Drums: a share of the random-mix and solo-voice renders gets a drum part on the GM percussion
channel, a steady pattern from the score's own bars, meter and tempo (`drums`), in a kit suited
to the tempo, entering after 1-3 bars and sometimes stopping early. `mtt/drums`, `mtt/beat` and
`mtt/beats` are 1 with the drums' spans, and 0 in every render without drums. Hydrogen's sampled
kits (`hydrogen-drumkits`) are not used yet. `msd/guitar` follows the guitar programs;
`msd/acoustic` stays unknown (whether a whole render is acoustic depends on every instrument).
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
