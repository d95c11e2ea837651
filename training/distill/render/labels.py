"""Labels of a rendering: which tags sound in it, and when, by two-vocabulary id (`mtt/piano`)."""

from __future__ import annotations

from collections import defaultdict

from training.distill.render.programs import (
    BEAT_TAGS,
    DRUM_TAGS,
    FAST_BPM,
    FAST_TAG,
    INSTRUMENT_TAGS,
    NO_VOICE_TAGS,
    SLOW_BPM,
    SLOW_TAG,
    SOLO_TAG,
    class_of_program,
)
from training.distill.render.synth import Rendering, merge_spans


def labels_for(rendering: Rendering) -> dict[str, int]:
    """Tag id -> 0/1: every INSTRUMENT_TAGS tag and "mtt/solo" always; the tempo tags when clear.

    The voice tags are 1 when a voice program sounds, and the "no vocal(s)"/"no voice" and
    "msd/instrumental" tags are 1 exactly when none does. "mtt/drums", "mtt/beat" and
    "mtt/beats" are 1 when the generated drum part plays (a steady pattern), else 0.

    "solo" means one player: one instrument that is not a section or choir, playing a single part,
    or several parts if one player can (a four-part chorale on one piano is solo piano; on four
    violins it is not), and no drummer beside it.
    """
    classes = [class_of_program(program) for program in rendering.programs]
    tags = {tag for cls in classes if cls is not None for tag in cls.tags}
    voiced = any(cls is not None and cls.voice for cls in classes)
    if not voiced:
        tags.update(NO_VOICE_TAGS)
    if rendering.drum_hits:
        tags.update(DRUM_TAGS + BEAT_TAGS)
    labels = {tag: int(tag in tags) for tag in INSTRUMENT_TAGS}
    [only] = classes if len(classes) == 1 else [None]
    solo = (
        only is not None
        and not only.ensemble
        and (rendering.sounding_parts == 1 or only.polyphonic)
        and not rendering.drum_hits
    )
    labels[SOLO_TAG] = int(solo)
    if rendering.tempo.marked and rendering.tempo.quarter_bpm >= FAST_BPM:
        labels |= {FAST_TAG: 1, SLOW_TAG: 0}
    elif rendering.tempo.marked and rendering.tempo.quarter_bpm <= SLOW_BPM:
        labels |= {FAST_TAG: 0, SLOW_TAG: 1}
    return labels


def active_tags(rendering: Rendering) -> dict[str, list[list[float]]]:
    """Positive instrument, voice and drum tag id -> merged [start_s, end_s] spans (10 ms).

    The "no vocal(s)" tags have no spans: absence of a voice holds for the whole render.
    """
    spans: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for program, program_spans in rendering.active.items():
        cls = class_of_program(program)
        for tag in cls.tags if cls else ():
            spans[tag].extend(program_spans)
    if rendering.drum_hits:
        for tag in DRUM_TAGS + BEAT_TAGS:
            spans[tag].extend(rendering.drum_active)
    return {
        tag: [[round(s, 2), round(e, 2)] for s, e in merge_spans(v)]
        for tag, v in sorted(spans.items())
    }
