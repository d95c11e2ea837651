"""Decode many audio files once, in parallel, into a DatasetWriter.

Files are decoded with the service's own decoder (`model.audio.decode.decode_audio`: PyAV, with a
soundfile fallback), so training sees exactly the waveforms the service will see. A file that
does not decode is skipped with a warning and counted; MagnaTagATune has a few broken mp3s.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from model.audio.decode import AudioDecodeError, decode_audio
from model.tags import Tag
from training.data.store import (
    DatasetError,
    DatasetWriter,
    PreparedDataset,
    SampleDType,
    SkippedFile,
    encode_samples,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClipSpec:
    """One file to decode and where it goes.

    Attributes:
        key: Unique clip name stored in the index.
        path: Audio file.
        labels: (C,) 0/1 labels.
        split: "train", "valid" or "test".
    """

    key: str
    path: Path
    labels: np.ndarray
    split: str


def _decode_one(job: tuple[str, int, SampleDType]) -> tuple[np.ndarray | None, str]:
    """Worker: (path, sample rate, dtype) -> (stored samples, "") or (None, reason)."""
    path, sample_rate, dtype = job
    try:
        decoded = decode_audio(path, sample_rate=sample_rate)
    except AudioDecodeError as error:
        return None, str(error)
    except Exception as error:  # a worker must report, not die: one bad file is not fatal
        return None, f"{type(error).__name__}: {error}"
    return encode_samples(decoded.samples, dtype), ""


def _results(
    jobs: list[tuple[str, int, SampleDType]], workers: int
) -> Iterator[tuple[np.ndarray | None, str]]:
    if workers <= 1:
        yield from map(_decode_one, jobs)
        return
    # spawn, not fork: forking a process that already runs torch threads can deadlock.
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        try:
            yield from pool.map(_decode_one, jobs, chunksize=4)
        except BrokenProcessPool as error:
            raise DatasetError(
                "a decoding worker crashed (the decoder itself failed on some file); "
                "run again with --workers 1 to find the file"
            ) from error


def decode_into(
    writer: DatasetWriter,
    clips: Sequence[ClipSpec],
    *,
    workers: int = 1,
    progress: bool = True,
) -> list[SkippedFile]:
    """Decode every clip at the writer's sample rate and append it; returns the skipped files."""
    jobs = [(str(clip.path), writer.sample_rate, writer.dtype) for clip in clips]
    skipped: list[SkippedFile] = []
    results = _results(jobs, workers)
    for clip, (samples, reason) in tqdm(
        zip(clips, results, strict=True),
        total=len(clips),
        desc="decoding",
        unit="file",
        disable=not progress,
    ):
        if samples is None:
            log.warning("skipping %s: %s", clip.path, reason)
            skipped.append(SkippedFile(str(clip.path), reason))
            continue
        writer.add(clip.key, str(clip.path), samples, clip.labels, clip.split)
    if skipped:
        log.warning("skipped %d of %d files that could not be decoded", len(skipped), len(clips))
    return skipped


def build_dataset(
    out: str | Path,
    clips: Sequence[ClipSpec],
    tags: Sequence[Tag],
    *,
    source: Mapping[str, Any],
    sample_rate: int,
    dtype: SampleDType,
    overwrite: bool = False,
    workers: int = 1,
    progress: bool = True,
) -> PreparedDataset:
    """Decode `clips` into a new prepared dataset at `out` and open it for reading.

    A failure part-way (including Ctrl-C) removes the half-written dataset.
    """
    writer = DatasetWriter(
        out, sample_rate=sample_rate, dtype=dtype, n_classes=len(tags), overwrite=overwrite
    )
    try:
        skipped = decode_into(writer, clips, workers=workers, progress=progress)
    except BaseException:
        writer.abort()
        raise
    return writer.finish(tags, source=source, skipped=skipped)
