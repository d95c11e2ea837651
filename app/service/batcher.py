"""Dynamic batching of analysis windows across requests.

The unit of batching is one window (e.g. 59,049 samples), not a request: a 3-minute track is
about 49 windows and shares batches with other requests' windows, and each request gets back
exactly its own windows' scores.

One worker thread owns the model. The event loop only enqueues and awaits:

    submit(windows (N, W)) --> [FIFO of requests, counted in windows] --> worker thread
         ^                                                                   |
         +--------- future resolved with (N, C) scores -----------------------+

A batch goes to the model when `max_batch_windows` windows wait, or when the oldest queued
window has waited `max_wait_s`, whichever comes first (the timer starts at the first queued
window, as in Ray Serve). Admission is bounded: a request that would push the queue past
`max_queued_windows` is refused at once (the caller answers 503). Windows of requests that passed
their deadline, disconnected or failed are dropped before they reach the model.

Which windows belong to which request, and which batch took them, is kept by the shared
`app.pipeline.window_queue.WindowQueue`, under this module's lock. A formed batch goes to the
model in one call: the model call (`model.runtime.Runtime`) cuts it into the few chunk shapes it
warmed up, and its warm-up is passed in as `warm_up`, run before the batcher reports ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from app.pipeline.defaults import InferFn
from app.pipeline.window_queue import Part, WindowQueue
from app.service.metrics import Metrics

logger = logging.getLogger("tagger.batcher")


class BatcherError(Exception):
    """Base class of the errors `Batcher.submit` raises."""


class QueueFullError(BatcherError):
    def __init__(self, windows: int, queued: int, capacity: int) -> None:
        super().__init__(f"{windows} windows do not fit: {queued} of {capacity} queued")
        self.windows, self.queued, self.capacity = windows, queued, capacity


class TooManyWindowsError(BatcherError):
    """A single request has more windows than the whole queue can hold."""

    def __init__(self, windows: int, capacity: int) -> None:
        super().__init__(f"{windows} windows exceed the queue capacity of {capacity}")
        self.windows, self.capacity = windows, capacity


class DeadlineExceededError(BatcherError):
    pass


class BatchFailedError(BatcherError):
    pass


class BatcherStoppedError(BatcherError):
    pass


@dataclass(frozen=True)
class BatchResult:
    """What one request gets back.

    Attributes:
        scores: (N, C) probabilities, row i for the request's window i.
        queue_seconds: Time its windows were queued and not being computed.
        compute_seconds: Time of the model calls that included its windows.
        batches: Number of batches its windows were spread over.
    """

    scores: Tensor
    queue_seconds: float
    compute_seconds: float
    batches: int


class _State(enum.Enum):
    ACTIVE = "active"
    DONE = "done"
    CANCELLED = "cancelled"
    FAILED = "failed"


class _Job:
    """One request's windows and results; which of them are batched is the queue's business.
    Compares by identity, as the queue needs."""

    def __init__(self, windows: Tensor, deadline: float, loop: asyncio.AbstractEventLoop) -> None:
        self.windows = windows
        self.n = int(windows.shape[0])
        self.scores: Tensor | None = None
        self.deadline = deadline
        self.enqueued_at = time.monotonic()
        self.compute_seconds = 0.0
        self.batches = 0
        self.state = _State.ACTIVE
        self.loop = loop
        self.future: asyncio.Future[BatchResult] = loop.create_future()


def _resolve(future: asyncio.Future[BatchResult], outcome: BatchResult | BaseException) -> None:
    if future.done():  # the awaiting side gave up (deadline, disconnect) first
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


class Batcher:
    """Forms batches of windows from concurrent requests and runs them on one worker thread.

    Args:
        infer: The model call; it runs only on the worker thread.
        window_samples: W, the length of every window.
        max_batch_windows: Largest batch the batcher forms from queued windows.
        max_wait_s: How long the oldest queued window may wait for company.
        max_queued_windows: Admission bound; beyond it `submit` raises QueueFullError.
        metrics: Where to record batch sizes, times and drops (optional).
        pin_memory: Stage batches in page-locked memory (CUDA: faster, asynchronous copies).
        warm_up: Runs on the worker thread before it reports ready (the service passes the
            runtime's, which runs every chunk shape once); None: nothing to warm up.
    """

    def __init__(
        self,
        infer: InferFn,
        *,
        window_samples: int,
        max_batch_windows: int,
        max_wait_s: float,
        max_queued_windows: int,
        metrics: Metrics | None = None,
        pin_memory: bool = False,
        warm_up: Callable[[], object] | None = None,
    ) -> None:
        if max_queued_windows < max_batch_windows:
            raise ValueError("max_queued_windows must be at least max_batch_windows")
        self._infer = infer
        self.window_samples = window_samples
        self.max_batch_windows = max_batch_windows
        self.max_wait_s = max_wait_s
        self.max_queued_windows = max_queued_windows
        self._warm_up = warm_up
        self._metrics = metrics
        self._staging = torch.empty((max_batch_windows, window_samples), pin_memory=pin_memory)
        self._queue: WindowQueue[_Job] = WindowQueue()
        self._queued = 0  # the queue's count, readable without the lock
        self._cond = threading.Condition()
        self._stopping = False
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self.warmup_error: str | None = None

    # ----- lifecycle -----------------------------------------------------------------------

    def start(self, *, warmup: bool = True) -> None:
        """Start the worker; it runs `warm_up` first (if `warmup`), then sets `ready`."""
        if self._thread is not None:
            raise RuntimeError("the batcher is already running")
        self._thread = threading.Thread(
            target=self._run, args=(warmup,), name="tagger-batcher", daemon=True
        )
        self._thread.start()

    @property
    def ready(self) -> bool:
        return self._ready.is_set() and self.warmup_error is None

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after the running batch; queued requests fail with BatcherStoppedError."""
        with self._cond:
            self._stopping = True
            self._ready.clear()
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
        with self._cond:
            for job in self._queue.waiting():
                self._queue.drop(job)
                self._finish_locked(job, _State.FAILED, BatcherStoppedError("shutting down"))
            self._set_queued_locked(self._queue.queued)

    @property
    def stopping(self) -> bool:
        return self._stopping

    @property
    def queued_windows(self) -> int:
        return self._queued

    # ----- event-loop side -----------------------------------------------------------------

    async def submit(self, windows: Tensor, *, deadline: float) -> BatchResult:
        """Queue a request's windows (N, W) and wait for their scores (N, C).

        Args:
            windows: (N, W) float32 windows of one request.
            deadline: `time.monotonic()` value after which the request is abandoned.

        Raises:
            TooManyWindowsError: N exceeds the queue capacity; retrying cannot help.
            QueueFullError: not enough room right now; retry later.
            DeadlineExceededError: still unfinished at the deadline; its windows are dropped.
            BatchFailedError: the model raised on a batch holding some of its windows.
            BatcherStoppedError: the service is shutting down.
            asyncio.CancelledError: the caller was cancelled (its windows are dropped).
        """
        if windows.dim() != 2 or windows.shape[1] != self.window_samples:
            raise ValueError(f"expected windows (N, {self.window_samples}), got {windows.shape}")
        n = int(windows.shape[0])
        if n > self.max_queued_windows:
            raise TooManyWindowsError(n, self.max_queued_windows)
        if deadline <= time.monotonic():
            raise DeadlineExceededError("the deadline passed before the request was queued")
        job = _Job(windows, deadline, asyncio.get_running_loop())
        with self._cond:
            if self._stopping:
                raise BatcherStoppedError("shutting down")
            if self._queued + n > self.max_queued_windows:
                raise QueueFullError(n, self._queued, self.max_queued_windows)
            self._queue.add(job, n)
            self._set_queued_locked(self._queue.queued)
            self._cond.notify()
        try:
            return await asyncio.wait_for(job.future, timeout=deadline - time.monotonic())
        except TimeoutError:
            self._abandon(job, "deadline")
            raise DeadlineExceededError("the request deadline passed") from None
        except asyncio.CancelledError:
            self._abandon(job, "cancelled")
            raise

    def _abandon(self, job: _Job, reason: str) -> None:
        with self._cond:
            if job.state is not _State.ACTIVE:
                return
            job.state = _State.CANCELLED
            self._drop_queued_locked(job, reason)

    # ----- worker side ---------------------------------------------------------------------

    def _run(self, warmup: bool) -> None:
        if warmup and self._warm_up is not None:
            try:
                self._warm_up()
            except Exception as error:  # the service stays up but never reports ready
                logger.exception("warm-up failed")
                self.warmup_error = f"{type(error).__name__}: {error}"
        self._ready.set()
        while True:
            parts = self._next_batch()
            if parts is None:
                return
            self._compute(parts)

    def _next_batch(self) -> list[Part[_Job]] | None:
        """Block until a batch is due; returns its parts or None to stop."""
        with self._cond:
            while True:
                if self._stopping:
                    return None
                self._drop_expired_locked()
                if not self._queue:
                    self._cond.wait()
                    continue
                waiting = self._queue.waiting()
                waited = time.monotonic() - waiting[0].enqueued_at
                if self._queue.queued < self.max_batch_windows and waited < self.max_wait_s:
                    # Wake at the oldest window's dispatch time or at the nearest deadline.
                    nearest = min(job.deadline for job in waiting) - time.monotonic()
                    self._cond.wait(max(0.0, min(self.max_wait_s - waited, nearest)))
                    continue
                return self._take_locked()

    def _take_locked(self) -> list[Part[_Job]]:
        parts = self._queue.take(self.max_batch_windows)
        self._set_queued_locked(self._queue.queued)
        return parts

    def _compute(self, parts: list[Part[_Job]]) -> None:
        size = sum(part.count for part in parts)
        batch = self._staging[:size]
        offset = 0
        for part in parts:
            batch[offset : offset + part.count].copy_(part.job.windows[part.first : part.end])
            offset += part.count
        started = time.monotonic()
        try:
            scores = self._infer(batch)
            if scores.dim() != 2 or scores.shape[0] != size:
                raise RuntimeError(f"the model returned {tuple(scores.shape)} for {size} windows")
        except Exception as error:
            # Only the requests with windows in this batch fail; the worker keeps serving.
            logger.exception("a batch of %d windows failed", size, extra={"windows": size})
            if self._metrics:
                self._metrics.failed_batches.inc()
            failure = BatchFailedError(f"{type(error).__name__}: {error}")
            with self._cond:
                for job in dict.fromkeys(part.job for part in parts):
                    if job.state is _State.ACTIVE:
                        self._drop_queued_locked(job, "failed")
                        self._finish_locked(job, _State.FAILED, failure)
            return
        elapsed = time.monotonic() - started
        if self._metrics:
            self._metrics.batch_compute.observe(elapsed)
            self._metrics.batch_size.observe(size)
        with self._cond:
            offset = 0
            for part in parts:
                job = part.job
                if job.state is _State.ACTIVE:
                    if job.scores is None:
                        job.scores = torch.empty((job.n, scores.shape[1]), dtype=scores.dtype)
                    job.scores[part.first : part.end] = scores[offset : offset + part.count]
                    job.compute_seconds += elapsed
                    job.batches += 1
                    if self._queue.complete(part):
                        total = time.monotonic() - job.enqueued_at
                        result = BatchResult(
                            scores=job.scores,
                            queue_seconds=max(0.0, total - job.compute_seconds),
                            compute_seconds=job.compute_seconds,
                            batches=job.batches,
                        )
                        self._finish_locked(job, _State.DONE, result)
                offset += part.count

    # ----- bookkeeping (call with the lock held) -------------------------------------------

    def _set_queued_locked(self, value: int) -> None:
        self._queued = value
        if self._metrics:
            self._metrics.queued_windows.set(value)

    def _drop_queued_locked(self, job: _Job, reason: str) -> None:
        """Take a job out of the queue, with its windows not batched yet."""
        dropped = self._queue.drop(job)
        if dropped == 0:
            return
        self._set_queued_locked(self._queue.queued)
        if self._metrics:
            self._metrics.dropped_windows.labels(reason=reason).inc(dropped)
        logger.debug("dropped %d queued windows (%s)", dropped, reason)

    def _drop_expired_locked(self) -> None:
        now = time.monotonic()
        for job in [job for job in self._queue.waiting() if job.deadline <= now]:
            self._drop_queued_locked(job, "deadline")
            self._finish_locked(job, _State.FAILED, DeadlineExceededError("deadline passed"))

    def _finish_locked(
        self, job: _Job, state: _State, outcome: BatchResult | BaseException
    ) -> None:
        job.state = state
        # A closed event loop raises RuntimeError: then nobody is waiting any more.
        with contextlib.suppress(RuntimeError):
            job.loop.call_soon_threadsafe(_resolve, job.future, outcome)
