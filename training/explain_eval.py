"""Evidence maps against ground truth: held-out renders where every note's time and pitch is known.

    nice python -m training.explain_eval --pieces 24 --halves 12 \
        --json docs/results/explanations.json [--skip N] [--checkpoint FILE] [--save-audio DIR]

Pieces come from the held-out test split of the music21 corpus (`split_of`), in the renders'
seeded order; each piece with two or more playing parts is rendered once with a low and a high
tagged instrument (the lowest parts on the low one, the others on the high one), so the two
instruments play in different registers. For every instrument tag of a render:

- **frequency**: ROC-AUC over mel bands of the tag's evidence summed over the track, against the
  bands its notes' fundamentals fall in (a band is positive when it holds at least
  `MIN_BAND_SHARE` of the tag's note time); averaged over tags and pieces (chance 0.5).
- **time**: ROC-AUC over the 0.46 s time steps of the track of the evidence summed over bands,
  against the steps whose centre lies where the tag sounds (its notes, rests shorter than a
  second bridged: the renders' `active` spans); only tags that enter or leave (both kinds of
  steps, at least two of each). The per-window score of the tag,
  spread over its window's steps, is the baseline an evidence map has to beat.

Both for the attention map and the gradient map (and the gradient map pooled to the attention's
bands, to compare like with like). Prints a table (with `--halves N` also for the first N
pieces and the rest), then the compute per minute of audio of each map; `--json` writes it all
with every piece's figures.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile
import torch
from sklearn.metrics import roc_auc_score

from model.checkpoint import load_checkpoint
from model.explain import Explainer, band_edges_hz, stitch
from model.inference import split_windows, window_starts
from training.distill.render import (
    class_of_program,
    interleaved_candidates,
    load_score,
    render_score,
    split_of,
    survey,
)
from training.distill.render.synth import Rendering, merge_spans

DEFAULT_CHECKPOINT = (
    Path(__file__).resolve().parents[1] / "model" / "weights" / "default.safetensors"
)
MIN_BAND_SHARE = 0.05
MAX_SECONDS = 45.0
# (low, high) GM programs, 0-based: cello+flute, guitar+flute, piano+violin, cello+violin,
# harpsichord+flute; dealt in turn to the pieces.
PAIRS: tuple[tuple[int, int], ...] = ((42, 73), (24, 73), (0, 40), (42, 40), (6, 73))


@dataclass(frozen=True)
class Piece:
    name: str
    programs: tuple[int, ...]
    rendering: Rendering


def held_out_pieces(count: int, seed: int = 0, skip: int = 0) -> list[Piece]:
    """`count` test-split pieces with at least two playing parts, rendered with a low+high pair,
    after the first `skip` such pieces (a second, disjoint set: `--skip 12`)."""
    pieces: list[Piece] = []
    for candidate in interleaved_candidates(seed):
        if len(pieces) >= count + skip:
            break
        if split_of(candidate) != "test":
            continue
        surveyed = survey(candidate, seed, 20.0, MAX_SECONDS)
        playing = [i for i, part in enumerate(surveyed.parts) if not math.isnan(part.median_pitch)]
        if not surveyed.ok or len(playing) < 2:
            continue
        low, high = PAIRS[len(pieces) % len(PAIRS)]
        order = sorted(playing, key=lambda i: surveyed.parts[i].median_pitch)
        programs = [low] * len(surveyed.parts)
        for rank, index in enumerate(order):
            programs[index] = low if rank < len(order) // 2 else high
        try:
            score = load_score(surveyed.piece)
            rendering = render_score(score, programs, max_seconds=MAX_SECONDS, peak_db=-3.0)
        except Exception as error:  # an odd score is skipped, as the renderer does
            print(f"skip {surveyed.piece}: {type(error).__name__}: {error}")
            continue
        if len(rendering.programs) < 2:
            continue
        pieces.append(Piece(surveyed.piece, tuple(programs), rendering))
        if len(pieces) <= skip:
            continue
        print(f"rendered {surveyed.piece}: programs {sorted(set(programs))}", flush=True)
    return pieces[skip:]


def tag_notes(rendering: Rendering) -> dict[str, list[tuple[float, float, int]]]:
    notes: dict[str, list[tuple[float, float, int]]] = defaultdict(list)
    for program, program_notes in rendering.notes.items():
        cls = class_of_program(program)
        for tag in cls.tags if cls else ():
            notes[tag].extend(program_notes)
    return dict(notes)


def band_occupancy(notes: Sequence[tuple[float, float, int]], edges: Sequence[float]) -> np.ndarray:
    """Share of the notes' duration whose fundamental lies in each band (n_bands,)."""
    occupancy = np.zeros(len(edges) - 1)
    for start, end, key in notes:
        f0 = 440.0 * 2 ** ((key - 69) / 12)
        band = int(np.clip(np.searchsorted(edges, f0, side="right") - 1, 0, len(edges) - 2))
        occupancy[band] += max(0.0, end - start)
    total = occupancy.sum()
    return occupancy / total if total > 0 else occupancy


def active_spans(notes: Sequence[tuple[float, float, int]]) -> list[tuple[float, float]]:
    """Where a tag sounds: its notes with rests under ACTIVE_GAP_SECONDS bridged, exactly as
    the renders' `active` spans (`training.distill.render.labels.active_tags`)."""
    return merge_spans([(start, end) for start, end, _ in notes])


def sounding_steps(spans: Sequence[tuple[float, float]], columns: int, step_s: float) -> np.ndarray:
    centres = (np.arange(columns) + 0.5) * step_s
    labels = np.zeros(columns, dtype=bool)
    for start, end in spans:
        labels |= (centres >= start) & (centres < end)
    return labels


def _auc(labels: np.ndarray, values: np.ndarray) -> float | None:
    if labels.sum() < 1 or (~labels).sum() < 1:
        return None
    return float(roc_auc_score(labels, values))


def evaluate(pieces: Sequence[Piece], checkpoint: Path) -> dict[str, Any]:
    loaded = load_checkpoint(checkpoint)
    model = loaded.model.eval()
    explainer = Explainer(model)
    # Render labels are two-vocabulary ids; a single-vocabulary checkpoint's bare names are MTT's.
    names = [tag.id if tag.taxonomy else f"mtt/{tag.name}" for tag in loaded.metadata.tags]
    window = model.audio.window_samples
    rate = model.audio.sample_rate
    mel = explainer.mel
    per_piece = []
    for piece in pieces:
        samples = torch.from_numpy(piece.rendering.samples)
        notes = tag_notes(piece.rendering)
        tags = [tag for tag in sorted(notes) if tag in names]
        if not tags:
            continue
        windows = split_windows(samples, window)
        starts = window_starts(samples.shape[0], window)
        evidence = explainer.explain(windows, [names.index(t) for t in tags], explainer.methods)
        maps: dict[str, torch.Tensor] = {str(k): v for k, v in evidence.maps.items()}
        if "gradient" in maps and "attention" in maps:
            bands = maps["attention"].shape[2]
            grad = maps["gradient"]
            maps["gradient@attention-bands"] = grad.reshape(
                *grad.shape[:2], bands, grad.shape[2] // bands, grad.shape[3]
            ).sum(3)
        row: dict[str, Any] = {"piece": piece.name, "programs": sorted(set(piece.programs))}
        # The baseline: each tag's per-window score spread over its window's time steps.
        steps = next(iter(maps.values())).shape[3]
        spread = evidence.scores[:, [names.index(t) for t in tags], None, None]
        score_track = stitch(spread.expand(-1, -1, 1, steps), starts, window, samples.shape[0])
        step_s = window / steps / rate
        for k, tag in enumerate(tags):
            labels = sounding_steps(active_spans(notes[tag]), score_track.shape[2], step_s)
            if labels.sum() >= 2 and (~labels).sum() >= 2:
                base = _auc(labels, score_track[k, 0].numpy())
                if base is not None:
                    row[f"time/window-score/{tag}"] = round(base, 3)
        for method, window_maps in maps.items():
            track = stitch(window_maps, starts, window, samples.shape[0]).numpy()  # (K, F, cols)
            edges = band_edges_hz(mel, track.shape[1])
            step_s = window / window_maps.shape[3] / rate
            for k, tag in enumerate(tags):
                occupied = band_occupancy(notes[tag], edges) >= MIN_BAND_SHARE
                freq = _auc(occupied, track[k].sum(axis=1))
                if freq is not None:
                    row[f"frequency/{method}/{tag}"] = round(freq, 3)
                labels = sounding_steps(active_spans(notes[tag]), track.shape[2], step_s)
                if labels.sum() >= 2 and (~labels).sum() >= 2:
                    value = _auc(labels, track[k].sum(axis=0))
                    if value is not None:
                        row[f"time/{method}/{tag}"] = round(value, 3)
        per_piece.append(row)
    return {"summary": summarise(per_piece), "pieces": per_piece, "checkpoint": loaded.model_id}


def summarise(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Mean ROC-AUC per measure over the tags and pieces of `rows` ("time/gradient/flute"...)."""
    values: dict[str, list[float]] = defaultdict(list)
    for row in rows:
        for key, value in row.items():
            if key.startswith(("frequency/", "time/")):
                values[key.rsplit("/", 1)[0]].append(value)
    return {
        key: {"mean": round(float(np.mean(v)), 3), "n": len(v)} for key, v in sorted(values.items())
    }


def explain_speed(pieces: Sequence[Piece], checkpoint: Path) -> dict[str, float]:
    """Seconds of compute per minute of audio, one tag, per method (8 windows a pass, as the
    service), over all the pieces."""
    loaded = load_checkpoint(checkpoint)
    explainer = Explainer(loaded.model.eval())
    window = loaded.model.audio.window_samples
    minutes = sum(len(p.rendering.samples) for p in pieces) / loaded.model.audio.sample_rate / 60
    speed: dict[str, float] = {}
    first = split_windows(torch.from_numpy(pieces[0].rendering.samples), window)[:8]
    for method in explainer.methods:  # a first pass of each: one-off set-up is not timed
        explainer.explain(first, [0], [method])
    for method in explainer.methods:
        begun = time.perf_counter()
        for piece in pieces:
            windows = split_windows(torch.from_numpy(piece.rendering.samples), window)
            for start in range(0, windows.shape[0], 8):
                explainer.explain(windows[start : start + 8], [0], [method])
        speed[method] = round((time.perf_counter() - begun) / minutes, 2)
    return speed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pieces", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip", type=int, default=0, help="skip the first N usable pieces")
    parser.add_argument(
        "--halves", type=int, metavar="N", help="also summarise the first N pieces and the rest"
    )
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--save-audio", type=Path, help="write the renders here as FLAC")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    begun = time.monotonic()
    pieces = held_out_pieces(args.pieces, args.seed, args.skip)
    if args.save_audio:
        args.save_audio.mkdir(parents=True, exist_ok=True)
        for piece in pieces:
            slug = piece.name.replace("/", "__").replace("#", "_")
            path = args.save_audio / f"{slug}.flac"
            soundfile.write(path, piece.rendering.samples, 16000)
    report = evaluate(pieces, args.checkpoint)
    report["seconds"] = round(time.monotonic() - begun, 1)
    report["compute_s_per_audio_minute"] = explain_speed(pieces, args.checkpoint)
    report["threads"] = args.threads
    if args.halves:
        report["summary_first"] = summarise(report["pieces"][: args.halves])
        report["summary_rest"] = summarise(report["pieces"][args.halves :])
    print(f"{len(pieces)} held-out renders, {report['seconds']} s, model {report['checkpoint']}")
    parts = ["summary", "summary_first", "summary_rest"] if args.halves else ["summary"]
    print(
        f"{'measure':36s}"
        + "".join(f"{p.removeprefix('summary_') if p != 'summary' else 'all':>14s}" for p in parts)
    )
    for key in report["summary"]:
        cells = "".join(
            f"{report[p][key]['mean']:9.3f} ({report[p][key]['n']:2d})"
            if key in report[p]
            else " " * 14
            for p in parts
        )
        print(f"{key:36s}{cells}")
    for method, seconds in report["compute_s_per_audio_minute"].items():
        print(f"{method} map, one tag: {seconds} s of compute per minute of audio")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
