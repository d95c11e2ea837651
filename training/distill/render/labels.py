"""Labels of a rendering: which tags sound in it, and when."""

from __future__ import annotations

from collections import defaultdict

from training.distill.render.programs import FAST_BPM, INSTRUMENT_TAGS, SLOW_BPM, class_of_program
from training.distill.render.synth import Rendering, merge_spans


def labels_for(rendering: Rendering) -> dict[str, int]:
    """Tag -> 0/1: every INSTRUMENT_TAGS tag and "solo" always; "fast"/"slow" only when clear.

    "solo" means one player: one instrument that is not a section or choir, playing a single part,
    or several parts if one player can (a four-part chorale on one piano is solo piano; on four
    violins it is not).
    """
    classes = [class_of_program(program) for program in rendering.programs]
    tags = {tag for cls in classes if cls is not None for tag in cls.tags}
    labels = {tag: int(tag in tags) for tag in INSTRUMENT_TAGS}
    [only] = classes if len(classes) == 1 else [None]
    solo = (
        only is not None
        and not only.ensemble
        and (rendering.sounding_parts == 1 or only.polyphonic)
    )
    labels["solo"] = int(solo)
    if rendering.tempo.marked and rendering.tempo.quarter_bpm >= FAST_BPM:
        labels |= {"fast": 1, "slow": 0}
    elif rendering.tempo.marked and rendering.tempo.quarter_bpm <= SLOW_BPM:
        labels |= {"fast": 0, "slow": 1}
    return labels


def active_tags(rendering: Rendering) -> dict[str, list[list[float]]]:
    """Positive instrument tag -> merged [start_s, end_s] spans (rounded to 10 ms)."""
    spans: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for program, program_spans in rendering.active.items():
        cls = class_of_program(program)
        for tag in cls.tags if cls else ():
            spans[tag].extend(program_spans)
    return {
        tag: [[round(s, 2), round(e, 2)] for s, e in merge_spans(v)]
        for tag, v in sorted(spans.items())
    }
