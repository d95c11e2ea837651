"""Running render jobs in a process pool, with the survey cache and the manifest."""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from training.distill.render.drums import choose_drums
from training.distill.render.labels import active_tags, labels_for
from training.distill.render.programs import (
    CORPUS_LICENCE,
    FAST_TAG,
    INSTRUMENT_TAGS,
    MAX_SECONDS,
    MIN_SECONDS,
    SAMPLE_RATE,
    SLOW_TAG,
    SOLO_TAG,
    class_of_program,
    split_of,
)
from training.distill.render.scores import PartInfo, load_score, start_tempo
from training.distill.render.soundfonts import (
    SOUNDFONT_BY_NAME,
    SOUNDFONTS,
    cached_path,
    fetch_soundfont,
)
from training.distill.render.survey import (
    Job,
    Survey,
    _rng,
    choral_candidates,
    interleaved_candidates,
    plan,
    survey,
)
from training.distill.render.synth import render_score

log = logging.getLogger(__name__)


@dataclass
class Rendered:
    job: Job
    samples: npt.NDArray[np.float32] | None
    row: dict[str, Any]
    seconds: float  # wall time spent


def voice_of(programs: Sequence[int]) -> str | None:
    """ "choir", "solo voice" or None: the kind of singing a render's programs hold."""
    classes = [cls for p in programs if (cls := class_of_program(p)) is not None and cls.voice]
    if any(cls.ensemble for cls in classes):
        return "choir"
    return "solo voice" if classes else None


def run_job(job: Job, max_seconds: float, soundfont_cache: Path) -> Rendered:
    """Parse, render and label one job (in a worker process when --workers > 1)."""
    start = time.perf_counter()
    soundfont = SOUNDFONT_BY_NAME[job.soundfont]
    try:
        score = load_score(job.piece)
        parse_s = time.perf_counter() - start
        drums = None
        if job.drums:
            rng = _rng("drums", job.piece, job.variant)
            drums = choose_drums(start_tempo(score).quarter_bpm, rng, max_seconds)
        rendering = render_score(
            score,
            job.programs,
            max_seconds=max_seconds,
            peak_db=job.peak_db,
            soundfont=cached_path(soundfont, soundfont_cache),
            drums=drums,
            drum_seed=f"{job.piece}:{job.variant}",
        )
    except Exception as error:  # a piece music21 parses but cannot export is skipped, not fatal
        log.warning("skipping %s (%s): %s: %s", job.piece, job.variant, type(error).__name__, error)
        return Rendered(job, None, {}, time.perf_counter() - start)
    metadata = score.metadata
    copyright_text = str(metadata.copyright) if metadata and metadata.copyright else ""
    row = {
        "path": job.path,
        "piece": job.piece,
        "split": split_of(job.piece),
        "variant": job.variant,
        "programs": list(rendering.programs),
        "part_programs": list(job.programs),
        "instruments": sorted(
            {cls.name for p in rendering.programs if (cls := class_of_program(p)) is not None}
        ),
        "voice": voice_of(rendering.programs),
        "drums": rendering.drums.kit.name if rendering.drums else None,
        "drum_start_bar": rendering.drums.start_bar if rendering.drums else None,
        "drum_hits": rendering.drum_hits,
        "label_keys": "tag id",
        "labels": labels_for(rendering),
        "active": active_tags(rendering),
        "tempo_bpm": round(rendering.tempo.quarter_bpm, 2),
        "tempo_marked": rendering.tempo.marked,
        "duration_s": round(rendering.duration_s, 3),
        "soundfont": soundfont.name,
        "soundfont_package": soundfont.package,
        "soundfont_licence": soundfont.licence,
        "licence": f"{copyright_text} ({CORPUS_LICENCE})" if copyright_text else CORPUS_LICENCE,
        "composer": (metadata.composer if metadata else None) or None,
        "title": (metadata.title if metadata else None) or None,
        "parse_s": round(parse_s, 3),
    }
    return Rendered(job, rendering.samples, row, time.perf_counter() - start)


def _survey_task(args: tuple[str, int, float, float]) -> Survey:
    return survey(*args)


def _job_task(args: tuple[Job, float, Path]) -> Rendered:
    return run_job(*args)


def _read_manifest(path: Path) -> dict[str, dict[str, Any]]:
    if not path.is_file():
        return {}
    rows = (json.loads(line) for line in path.read_text().splitlines() if line.strip())
    return {row["path"]: row for row in rows}


def _survey_params(seed: int, min_seconds: float, max_seconds: float) -> dict[str, Any]:
    from music21 import __version__ as music21_version

    return {"seed": seed, "min": min_seconds, "max": max_seconds, "music21": music21_version}


def survey_corpus(
    cache_path: Path,
    pieces: int,
    seed: int,
    min_seconds: float,
    max_seconds: float,
    mapped: Any = map,
    candidates: Iterator[str] | None = None,
    desc: str = "survey",
) -> list[Survey]:
    """The first `pieces` usable candidates, in `interleaved_candidates` order (or `candidates`).

    Surveys are cached in `cache_path` (one JSON line per corpus file, for these parameters), so
    a rerun does not parse the corpus again: parsing is most of the survey's cost.
    """
    from tqdm import tqdm

    params = _survey_params(seed, min_seconds, max_seconds)
    cached: dict[str, Survey] = {}
    if cache_path.is_file():
        for line in cache_path.read_text().splitlines():
            row = json.loads(line)
            if row.pop("params") == params:
                file = row.pop("file")
                parts = tuple(PartInfo(**part) for part in row.pop("parts"))
                cached[file] = Survey(**row, parts=parts)
    started = time.perf_counter()
    if candidates is None:
        candidates = interleaved_candidates(seed)
    usable: list[Survey] = []
    surveyed: list[Survey] = []
    with tqdm(total=pieces, desc=desc, unit="piece") as bar, cache_path.open("a") as cache:
        while len(usable) < pieces:
            # One file per missing piece, at least 8 to keep workers busy (extras are cached).
            batch = list(itertools.islice(candidates, max(pieces - len(usable), 8)))
            if not batch:
                break
            fresh = [file for file in batch if file not in cached]
            tasks = [(file, seed, min_seconds, max_seconds) for file in fresh]
            for file, item in zip(fresh, mapped(_survey_task, tasks), strict=True):
                cached[file] = item
                row = {"file": file, "params": params, **dataclasses.asdict(item)}
                cache.write(json.dumps(row) + "\n")
            for file in batch:
                item = cached[file]
                surveyed.append(item)
                if item.ok and len(usable) < pieces:
                    usable.append(item)
                    bar.update()
    skipped = Counter(s.reason.split(":")[0] for s in surveyed if not s.ok)
    log.info(
        "surveyed %d files in %.0f s (%.0f s of parsing, cached or not): %d usable, skipped %s",
        len(surveyed),
        time.perf_counter() - started,
        sum(s.parse_s for s in surveyed),
        len(usable),
        dict(skipped),
    )
    return usable


def render_corpus(
    dest: Path,
    *,
    pieces: int,
    seed: int,
    workers: int = 1,
    min_seconds: float = MIN_SECONDS,
    max_seconds: float = MAX_SECONDS,
    piano_fraction: float = 0.3,
    heldout_mixes: int = 2,
    choral_pieces: int = 0,
    vox_fraction: float = 0.0,
    drum_fraction: float = 0.0,
    soundfonts: Sequence[str] = (SOUNDFONTS[0].name,),
) -> list[dict[str, Any]]:
    """Survey corpus pieces until `pieces` (and `choral_pieces`) are usable, then render them.

    The soundfonts named are fetched into `dest/soundfonts` first. Deterministic for a given seed;
    renders already in `dest/manifest.jsonl` are kept, so an interrupted run resumes. Returns the
    manifest rows of this plan.
    """
    import soundfile
    from tqdm import tqdm

    dest.mkdir(parents=True, exist_ok=True)
    (dest / "audio").mkdir(exist_ok=True)
    manifest_path = dest / "manifest.jsonl"
    done = _read_manifest(manifest_path)
    soundfont_cache = dest / "soundfonts"
    for name in soundfonts:
        fetch_soundfont(SOUNDFONT_BY_NAME[name], soundfont_cache)
    pool = ProcessPoolExecutor(workers) if workers > 1 else None

    def mapped(function: Any, items: Iterable[Any]) -> Iterator[Any]:
        return pool.map(function, items) if pool else map(function, items)

    try:
        usable = survey_corpus(
            dest / "survey.jsonl", pieces, seed, min_seconds, max_seconds, mapped
        )
        choral = survey_corpus(
            dest / "survey.jsonl",
            choral_pieces,
            seed,
            min_seconds,
            max_seconds,
            mapped,
            choral_candidates(seed),
            "choral survey",
        )
        jobs = plan(
            usable,
            seed,
            piano_fraction=piano_fraction,
            heldout_mixes=heldout_mixes,
            vox_fraction=vox_fraction,
            drum_fraction=drum_fraction,
            choral=choral,
            soundfonts=soundfonts,
        )
        todo = [job for job in jobs if not (job.path in done and (dest / job.path).is_file())]
        log.info("%d renders planned, %d already done", len(jobs), len(jobs) - len(todo))
        started = time.perf_counter()
        with manifest_path.open("a") as manifest:
            for result in tqdm(
                mapped(_job_task, [(job, max_seconds, soundfont_cache) for job in todo]),
                total=len(todo),
                desc="render",
                unit="render",
            ):
                if result.samples is None:
                    continue
                target = dest / result.job.path
                partial = target.with_suffix(".partial.flac")
                soundfile.write(partial, result.samples, SAMPLE_RATE, subtype="PCM_16")
                partial.replace(target)
                result.row["render_s"] = round(result.seconds, 3)
                manifest.write(json.dumps(result.row) + "\n")
                manifest.flush()
                done[result.job.path] = result.row
        log.info("rendered %d in %.0f s", len(todo), time.perf_counter() - started)
        # Rewrite once, so a render that was redone (its FLAC had gone) is listed once.
        partial = manifest_path.with_suffix(".partial")
        partial.write_text("".join(json.dumps(row) + "\n" for row in done.values()))
        partial.replace(manifest_path)
    finally:
        if pool:
            pool.shutdown(cancel_futures=True)
    return [done[job.path] for job in jobs if job.path in done]


def summarise(rows: Sequence[dict[str, Any]]) -> str:
    """Renders, hours and positives per tag per split, then hours per soundfont, voice and drums,
    as plain-text tables."""
    splits = ("train", "valid", "test")
    tags = [*INSTRUMENT_TAGS, SOLO_TAG, FAST_TAG, SLOW_TAG]
    count = Counter(row["split"] for row in rows)
    hours: dict[str, float] = defaultdict(float)
    positives: dict[str, Counter[str]] = defaultdict(Counter)
    for row in rows:
        hours[row["split"]] += row["duration_s"] / 3600
        for tag, value in row["labels"].items():
            positives[row["split"]][tag] += int(value)
    width = max(len(tag) for tag in tags) + 2
    lines = [f"{'':{width}}" + "".join(f"{s:>8}" for s in splits)]
    lines.append(f"{'renders':{width}}" + "".join(f"{count[s]:>8}" for s in splits))
    lines.append(f"{'hours':{width}}" + "".join(f"{hours[s]:>8.2f}" for s in splits))
    pieces = {s: len({r["piece"] for r in rows if r["split"] == s}) for s in splits}
    lines.append(f"{'pieces':{width}}" + "".join(f"{pieces[s]:>8}" for s in splits))
    for tag in tags:
        lines.append(f"{tag:{width}}" + "".join(f"{positives[s][tag]:>8}" for s in splits))
    groups: dict[str, Callable[[dict[str, Any]], str]] = {
        "soundfont": lambda row: str(row.get("soundfont")),
        "voice": lambda row: str(row.get("voice") or "none"),
        "drums": lambda row: "drums" if row.get("drums") else "no drums",
    }
    for field, key in groups.items():
        by: dict[str, float] = defaultdict(float)
        renders: Counter[str] = Counter()
        for row in rows:
            by[key(row)] += row["duration_s"] / 3600
            renders[key(row)] += 1
        lines.append("")
        lines.append(f"{field:{width}}{'renders':>8}{'hours':>8}")
        for name in sorted(by):
            lines.append(f"{name:{width}}{renders[name]:>8}{by[name]:>8.2f}")
    return "\n".join(lines)
