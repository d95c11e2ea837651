"""Tag many local files with one model: the engine behind `tagger tag`.

Decoding runs in a thread pool a few files ahead of the model, so decoding the next files
overlaps the forward passes of the current ones. Decoded files are cut into windows exactly as
the service cuts an upload (`model.inference.split_windows`), and their windows join one FIFO
queue, the same `app.pipeline.window_queue.WindowQueue` the service's batcher fills batches
from: each batch is filled from as many files as it takes, so a folder of short clips still runs
full batches. A file whose windows are all scored becomes a `FileResult`; results come out
in input order whatever order the work finished in.

A file that cannot be read or decoded becomes a `FileResult` with an `error`, and the run goes
on. The model is one call, `InferFn` (windows in, probabilities out): `tagger tag` passes a
`model.runtime.Runtime`, prepared as the service prepares it. With `n_tags` given, the call's
rows may carry each window's embedding after its scores (`model.embedding`); results then hold
the track's and the windows' embeddings too.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from app.pipeline.defaults import InferFn
from app.pipeline.describe import track_scores, window_times
from app.pipeline.window_queue import Part, WindowQueue
from model.audio.decode import AudioDecodeError, decode_audio
from model.audio.sniff import SNIFF_BYTES, SUPPORTED_FORMATS, sniff_audio
from model.embedding import split_rows, track_embedding
from model.inference import split_windows

__all__ = ["AUDIO_SUFFIXES", "BatchTagger", "FileList", "FileResult", "InferFn", "collect_files"]

# Folder walks pick files by name, as people name audio; the content still decides (see
# `_read_and_decode`), so a misnamed file fails with a reason instead of being guessed at.
AUDIO_SUFFIXES = frozenset(
    {".mp3", ".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".m4a", ".mp4", ".aac"}
    | {".webm", ".mka"}
)


@dataclass(frozen=True)
class FileResult:
    """What tagging one file produced.

    Attributes:
        path: The file as named on the command line or found in a folder.
        error: Why the file was not tagged, or None.
        duration_seconds: Length of the decoded audio.
        container: The container the decoder recognised (FFmpeg's name, e.g. "ogg").
        track_scores: (n_tags,) mean of the window probabilities.
        window_scores: (windows, n_tags) probabilities.
        window_times: (start, end) seconds of each window.
        embedding: (D,) the track's L2-normalised embedding, when the model call returned one.
        window_embeddings: (windows, D) each window's embedding, likewise.
    """

    path: str
    error: str | None = None
    duration_seconds: float = 0.0
    container: str = ""
    track_scores: Tensor | None = None
    window_scores: Tensor | None = None
    window_times: list[tuple[float, float]] = field(default_factory=list)
    embedding: Tensor | None = None
    window_embeddings: Tensor | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class FileList:
    """The files a run will tag, in order, and what was left out while collecting them.

    Attributes:
        files: Files to tag, each once, in command-line order; folders contribute their audio
            files sorted by path.
        unusable: (path, reason) of command-line paths that do not exist or cannot be listed;
            they count as failed files.
        ignored: Files inside folders that are not audio by name, or hidden.
        subfolders_not_searched: Subfolders of the given folders left out without `recursive`.
    """

    files: list[str]
    unusable: list[tuple[str, str]]
    ignored: int
    subfolders_not_searched: int


def _walk(folder: Path) -> Iterator[Path]:
    """Every file below `folder`, hidden folders left out."""

    def fail(error: OSError) -> None:
        raise error

    for root, dirs, names in os.walk(folder, onerror=fail):
        dirs[:] = [d for d in dirs if not d.startswith(".")]  # in place: prunes the walk
        yield from (Path(root) / name for name in names)


def collect_files(paths: Iterable[str | Path], *, recursive: bool) -> FileList:
    """Expand command-line paths into the files to tag.

    A file given by name is always tagged (its content decides whether it is audio). In a
    folder, only files with an audio suffix (`AUDIO_SUFFIXES`) are taken and hidden files are
    skipped (macOS leaves `._song.mp3` resource forks next to real songs); without `recursive`
    only the folder's own files are taken.
    """
    files: list[str] = []
    seen: set[Path] = set()
    unusable: list[tuple[str, str]] = []
    ignored = 0
    subfolders = 0

    def add(path: Path) -> None:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            files.append(str(path))

    for raw in paths:
        path = Path(raw)
        if not path.exists():
            unusable.append((str(raw), "no such file or folder"))
            continue
        if not path.is_dir():
            add(path)
            continue
        try:
            found = sorted(_walk(path)) if recursive else sorted(path.iterdir())
        except OSError as error:
            unusable.append((str(raw), f"cannot list the folder: {error.strerror or error}"))
            continue
        for entry in found:
            if entry.is_dir():
                subfolders += 1
            elif entry.name.startswith(".") or entry.suffix.lower() not in AUDIO_SUFFIXES:
                ignored += 1
            else:
                add(entry)
    return FileList(files, unusable, ignored, subfolders)


@dataclass(eq=False)  # compared by identity: the window queue tells jobs apart by hash
class _Decoded:
    """A decoded file cut into windows, waiting for (or in) the window queue."""

    index: int
    path: str
    windows: Tensor
    n_samples: int
    container: str
    scores: Tensor | None = None  # (windows, n_tags), allocated by the first batch
    error: str | None = None


def _read_and_decode(path: str, sample_rate: int, max_seconds: float | None) -> tuple[Tensor, str]:
    """(samples, container) of one file; raises AudioDecodeError with a reason in plain words."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(SNIFF_BYTES)
    except OSError as error:
        raise AudioDecodeError(f"cannot read the file: {error.strerror or error}") from error
    if not head:
        raise AudioDecodeError("the file is empty")
    # The service's rule: FFmpeg demuxes much more than audio (playlists that fetch URLs or read
    # other local files among them), so only content that starts like audio reaches it.
    if sniff_audio(head) is None:
        raise AudioDecodeError(
            f"not audio in a supported format ({SUPPORTED_FORMATS}); the format is recognised "
            "from the content, not from the file name"
        )
    # Absolute, because FFmpeg reads "name:rest" as protocol and address: a file in the current
    # folder called "http:x.mp3" or "concat:a|b" must still be read as that file.
    decoded = decode_audio(os.path.abspath(path), sample_rate=sample_rate, max_seconds=max_seconds)
    return torch.from_numpy(decoded.samples), decoded.container


class BatchTagger:
    """Tags files with windows from several files per batch; see the module docstring.

    Args:
        infer: The model call.
        window_samples: Samples per analysis window.
        sample_rate: Hz the model expects; files are resampled to it.
        batch_windows: Windows per forward pass (the last batch of a run may be smaller).
        decode_workers: Threads decoding ahead of the model.
        max_seconds: Files longer than this fail instead of being tagged; None for no limit.
        n_tags: The vocabulary size, when the model call's rows may hold embeddings after the
            scores; None when they are scores only.
    """

    def __init__(
        self,
        infer: InferFn,
        *,
        window_samples: int,
        sample_rate: int,
        batch_windows: int = 8,
        decode_workers: int = 1,
        max_seconds: float | None = None,
        n_tags: int | None = None,
    ) -> None:
        if batch_windows < 1:
            raise ValueError(f"batch_windows must be at least 1, got {batch_windows}")
        if decode_workers < 1:
            raise ValueError(f"decode_workers must be at least 1, got {decode_workers}")
        self.infer = infer
        self.window_samples = window_samples
        self.sample_rate = sample_rate
        self.batch_windows = batch_windows
        self.decode_workers = decode_workers
        self.max_seconds = max_seconds
        self.n_tags = n_tags
        # Where the model thread's time went, for tuning --decode-workers and --batch-windows.
        self.compute_seconds = 0.0
        self.decode_wait_seconds = 0.0
        self.batches = 0

    def _decode(self, index: int, path: str) -> _Decoded | FileResult:
        try:
            samples, container = _read_and_decode(path, self.sample_rate, self.max_seconds)
        except AudioDecodeError as error:
            # The decoder saw the absolute path; the record names the file as the user did.
            return FileResult(path=path, error=str(error).replace(os.path.abspath(path), path))
        except Exception as error:  # a decoder tripping over a hostile file is the file's fault
            return FileResult(path=path, error=f"could not decode the audio: {error!r}")
        windows = split_windows(samples, self.window_samples)
        return _Decoded(
            index=index,
            path=path,
            windows=windows,
            n_samples=int(samples.shape[0]),
            container=container,
        )

    def _result(self, job: _Decoded) -> FileResult:
        if job.error is not None or job.scores is None:
            return FileResult(path=job.path, error=job.error or "the file was not scored")
        scores, embeddings = job.scores, None
        if self.n_tags is not None:
            scores, embeddings = split_rows(job.scores, self.n_tags)
        return FileResult(
            path=job.path,
            duration_seconds=job.n_samples / self.sample_rate,
            container=job.container,
            track_scores=track_scores(scores),
            window_scores=scores,
            window_times=window_times(job.n_samples, self.window_samples, self.sample_rate),
            embedding=None if embeddings is None else track_embedding(embeddings),
            window_embeddings=embeddings,
        )

    def tag(self, files: Sequence[str]) -> Iterator[FileResult]:
        """Tag `files`, yielding one result per file in the same order."""
        lookahead = 2 * self.decode_workers
        pool = ThreadPoolExecutor(self.decode_workers, thread_name_prefix="tagger-decode")
        submitted: deque[tuple[int, Future[_Decoded | FileResult]]] = deque()
        queue: WindowQueue[_Decoded] = WindowQueue()
        finished: dict[int, FileResult] = {}
        next_submit = 0
        next_yield = 0

        def top_up() -> None:
            nonlocal next_submit
            while next_submit < len(files) and len(submitted) < lookahead:
                index = next_submit
                submitted.append((index, pool.submit(self._decode, index, files[index])))
                next_submit += 1

        try:
            while True:
                top_up()
                while queue.queued < self.batch_windows and submitted:
                    index, future = submitted.popleft()
                    top_up()  # keep the decoders busy while this thread waits and computes
                    waiting = time.perf_counter()
                    outcome = future.result()
                    self.decode_wait_seconds += time.perf_counter() - waiting
                    if isinstance(outcome, FileResult):
                        finished[index] = outcome
                    else:
                        queue.add(outcome, int(outcome.windows.shape[0]))
                while next_yield in finished:
                    yield finished.pop(next_yield)
                    next_yield += 1
                if queue.queued == 0:
                    if next_yield >= len(files):
                        return
                    continue
                parts = queue.take(self.batch_windows)
                batch = torch.cat([part.job.windows[part.first : part.end] for part in parts])
                self._score(queue, parts, batch, finished)
                while next_yield in finished:
                    yield finished.pop(next_yield)
                    next_yield += 1
        finally:
            pool.shutdown(wait=False, cancel_futures=True)

    def _score(
        self,
        queue: WindowQueue[_Decoded],
        parts: list[Part[_Decoded]],
        batch: Tensor,
        finished: dict[int, FileResult],
    ) -> None:
        started = time.perf_counter()
        try:
            probabilities = self.infer(batch)
        except Exception as error:  # every file with windows in this batch fails, the run goes on
            for part in parts:
                part.job.error = f"the model failed on a batch holding this file: {error!r}"
        else:
            offset = 0
            for part in parts:
                job = part.job
                if job.scores is None:
                    job.scores = torch.empty(job.windows.shape[0], probabilities.shape[1])
                job.scores[part.first : part.end] = probabilities[offset : offset + part.count]
                offset += part.count
        finally:
            self.compute_seconds += time.perf_counter() - started
            self.batches += 1
        # A file whose batch failed still has its later windows scored (and ignored): its
        # result comes when its last window is done, as for every other file.
        for part in parts:
            if queue.complete(part):
                finished[part.job.index] = self._result(part.job)
