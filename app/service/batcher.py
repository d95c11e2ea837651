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
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from app.pipeline.defaults import InferFn
from app.pipeline.window_queue import Part, WindowQueue
from app.service.metrics import Metrics

logger = logging.getLogger("tagger.batcher")


class BatcherError(Exception):
    """Base class of the errors a `WindowStream` raises."""


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
        scores: (N, C) model outputs, row i for the request's window i.
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
    Compares by identity, as the queue needs. Fields are guarded by the batcher's lock."""

    def __init__(
        self, deadline: float, deadline_per_window_s: float, loop: asyncio.AbstractEventLoop
    ) -> None:
        self._pieces: deque[Tensor] = deque()  # windows put and not yet taken, in order
        self._offset = 0  # rows of the first piece taken already
        self.n = 0  # windows put so far
        self.rows: dict[int, Tensor] = {}  # output rows by first window, as batches return
        self.deadline = deadline
        self.deadline_per_window_s = deadline_per_window_s
        self.enqueued_at = time.monotonic()
        self.pending_since = self.enqueued_at  # when its oldest untaken window was put
        self.compute_seconds = 0.0
        self.batches = 0
        self.state = _State.ACTIVE
        self.loop = loop
        self.future: asyncio.Future[BatchResult] = loop.create_future()
        self.room = asyncio.Event()  # set from the worker when it takes windows

    def put(self, windows: Tensor) -> None:
        self._pieces.append(windows)
        self.n += int(windows.shape[0])

    def take(self, count: int) -> list[Tensor]:
        """The next `count` windows put, in order; the job lets go of them (bounded memory:
        a long recording holds only its queued windows, never all of them)."""
        taken: list[Tensor] = []
        while count:
            piece = self._pieces[0]
            rows = piece[self._offset : self._offset + count]
            taken.append(rows)
            count -= rows.shape[0]
            self._offset += rows.shape[0]
            if self._offset == piece.shape[0]:
                self._pieces.popleft()
                self._offset = 0
        return taken

    def release(self) -> None:
        self._pieces.clear()

    def scores(self) -> Tensor:
        return torch.cat([self.rows[first] for first in sorted(self.rows)])


def _resolve(future: asyncio.Future[BatchResult], outcome: BatchResult | BaseException) -> None:
    if future.done():  # the awaiting side gave up (deadline, disconnect) first
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


class WindowStream:
    """One request's windows entering the batcher as they are decoded; see `Batcher.open`.

    Use from the event loop: `await put(windows)` for each group of windows, `close()` after
    the last, then `await result()`. Leaving early (an exception, a cancelled task) must call
    `cancel()`, which drops the windows not computed yet.
    """

    def __init__(self, batcher: Batcher, job: _Job) -> None:
        self._batcher = batcher
        self._job = job

    @property
    def deadline(self) -> float:
        """`time.monotonic()` after which the request is abandoned; grows with its windows."""
        return self._job.deadline

    @property
    def windows(self) -> int:
        return self._job.n

    async def put(self, windows: Tensor) -> None:
        """Queue (n, W) more windows, waiting while the request has its share queued already.

        Raises:
            DeadlineExceededError: the deadline passed while waiting for room.
            BatchFailedError, BatcherStoppedError: the request failed meanwhile.
        """
        batcher, job = self._batcher, self._job
        if windows.dim() != 2 or windows.shape[1] != batcher.window_samples:
            raise ValueError(f"expected windows (N, {batcher.window_samples}), got {windows.shape}")
        n = int(windows.shape[0])
        while True:
            with batcher._cond:
                self._raise_if_over_locked()
                if batcher._has_room_locked(job, n):
                    batcher._extend_locked(job, windows)
                    return
                job.room.clear()
                batcher._blocked.add(job)
            remaining = job.deadline - time.monotonic()
            try:
                await asyncio.wait_for(job.room.wait(), timeout=max(0.0, remaining))
            except TimeoutError:
                continue  # the loop above checks the deadline (it may have grown meanwhile)

    def close(self) -> None:
        """No more windows: the result is ready once the queued ones are computed."""
        with self._batcher._cond:
            self._raise_if_over_locked()
            self._batcher._close_locked(self._job)

    async def result(self) -> BatchResult:
        """Wait for the scores of every window put.

        Raises:
            DeadlineExceededError: still unfinished at the deadline; its windows are dropped.
            BatchFailedError: the model raised on a batch holding some of its windows.
            BatcherStoppedError: the service is shutting down.
        """
        job = self._job
        while True:
            remaining = job.deadline - time.monotonic()
            if remaining <= 0:
                self._batcher._abandon(job, "deadline")
                raise DeadlineExceededError("the request deadline passed")
            done, _ = await asyncio.wait({job.future}, timeout=remaining)
            if done:
                return job.future.result()

    def cancel(self, reason: str = "cancelled") -> None:
        """Drop the request's windows that were not computed yet (idempotent)."""
        self._batcher._abandon(self._job, reason)

    def _raise_if_over_locked(self) -> None:
        job = self._job
        if job.future.done() and job.future.exception() is not None:
            raise job.future.exception()  # type: ignore[misc]
        if job.state is not _State.ACTIVE:
            raise BatcherStoppedError("the request is no longer queued")
        if self._batcher._stopping:
            raise BatcherStoppedError("shutting down")
        if job.deadline <= time.monotonic():
            job.state = _State.CANCELLED
            self._batcher._drop_queued_locked(job, "deadline")
            raise DeadlineExceededError("the request deadline passed")


class Batcher:
    """Forms batches of windows from concurrent requests and runs them on one worker thread.

    Args:
        infer: The model call; it runs only on the worker thread.
        window_samples: W, the length of every window.
        max_batch_windows: Largest batch the batcher forms from queued windows.
        max_wait_s: How long the oldest queued window may wait for company.
        max_queued_windows: Bound on queued windows of all requests together; a request whose
            windows do not fit waits for room (within its deadline).
        max_request_queued_windows: Bound on one request's queued windows: a long recording
            enters a few windows at a time, so batches stay short and other requests' windows
            join the next one.
        fair: Share each batch among the requests with queued windows, round-robin (the
            service); False: oldest request first.
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
        max_request_queued_windows: int | None = None,
        fair: bool = True,
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
        self.max_request_queued_windows = max_request_queued_windows or max_queued_windows
        self._warm_up = warm_up
        self._metrics = metrics
        self._staging = torch.empty((max_batch_windows, window_samples), pin_memory=pin_memory)
        self._queue: WindowQueue[_Job] = WindowQueue(fair=fair)
        self._queued = 0  # the queue's count, readable without the lock
        self._blocked: set[_Job] = set()  # jobs waiting in `put` for room
        self._cond = threading.Condition()
        self._stopping = False
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self.warmup_error: str | None = None
        self._batch_started: float | None = None  # monotonic start of the running model call

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
            for job in [*self._queue.waiting(), *self._blocked]:
                self._queue.drop(job)
                self._finish_locked(job, _State.FAILED, BatcherStoppedError("shutting down"))
            self._set_queued_locked(self._queue.queued)
            self._wake_blocked_locked()

    @property
    def stopping(self) -> bool:
        return self._stopping

    @property
    def running_batch_seconds(self) -> float:
        """How long the model call now running has taken so far (0 when none runs)."""
        started = self._batch_started
        return 0.0 if started is None else time.monotonic() - started

    @property
    def queued_windows(self) -> int:
        return self._queued

    # ----- event-loop side -----------------------------------------------------------------

    def open(self, *, deadline: float, deadline_per_window_s: float = 0.0) -> WindowStream:
        """Start a request whose windows arrive over time; see `WindowStream`.

        Args:
            deadline: `time.monotonic()` value after which the request is abandoned.
            deadline_per_window_s: How much later the deadline gets with each window put.

        Raises:
            DeadlineExceededError: the deadline passed already.
            BatcherStoppedError: the service is shutting down.
        """
        if deadline <= time.monotonic():
            raise DeadlineExceededError("the deadline passed before the request was queued")
        job = _Job(deadline, deadline_per_window_s, asyncio.get_running_loop())
        with self._cond:
            if self._stopping:
                raise BatcherStoppedError("shutting down")
            self._queue.add(job, 0, open=True)
        return WindowStream(self, job)

    async def submit(self, windows: Tensor, *, deadline: float) -> BatchResult:
        """Queue a request's windows (N, W) at once and wait for their outputs (N, C).

        Raises as `WindowStream.put` and `WindowStream.result` do; asyncio.CancelledError
        when the caller was cancelled (its windows are dropped).
        """
        stream = self.open(deadline=deadline)
        try:
            for first in range(0, int(windows.shape[0]), self.max_request_queued_windows):
                await stream.put(windows[first : first + self.max_request_queued_windows])
            stream.close()
            return await stream.result()
        except BaseException:
            stream.cancel()
            raise

    def _has_room_locked(self, job: _Job, n: int) -> bool:
        # A group bigger than a bound still enters when nothing it competes with is queued,
        # so no group waits for ever.
        mine = self._queue.queued_of(job)
        fits_mine = mine == 0 or mine + n <= self.max_request_queued_windows
        fits_all = self._queued == 0 or self._queued + n <= self.max_queued_windows
        return fits_mine and fits_all

    def _extend_locked(self, job: _Job, windows: Tensor) -> None:
        n = int(windows.shape[0])
        if n == 0:
            return
        if self._queue.queued_of(job) == 0:
            job.pending_since = time.monotonic()
        job.put(windows)
        job.deadline += n * job.deadline_per_window_s
        self._blocked.discard(job)
        self._queue.extend(job, n)
        self._set_queued_locked(self._queue.queued)
        self._cond.notify()

    def _close_locked(self, job: _Job) -> None:
        if job.n == 0:
            raise ValueError("a request needs at least one window")
        if self._queue.close(job):
            self._finish_locked(job, _State.DONE, self._result(job))

    def _abandon(self, job: _Job, reason: str) -> None:
        with self._cond:
            self._blocked.discard(job)
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
            taken = self._next_batch()
            if taken is None:
                return
            self._compute(*taken)

    def _next_batch(self) -> tuple[list[Part[_Job]], list[Tensor]] | None:
        """Block until a batch is due; returns its parts and their windows, or None to stop."""
        with self._cond:
            while True:
                if self._stopping:
                    return None
                self._drop_expired_locked()
                if not self._queue:
                    self._cond.wait()
                    continue
                waiting = self._queue.waiting()
                waited = time.monotonic() - min(job.pending_since for job in waiting)
                if self._queue.queued < self.max_batch_windows and waited < self.max_wait_s:
                    # Wake at the oldest window's dispatch time or at the nearest deadline.
                    nearest = min(job.deadline for job in waiting) - time.monotonic()
                    self._cond.wait(max(0.0, min(self.max_wait_s - waited, nearest)))
                    continue
                return self._take_locked()

    def _take_locked(self) -> tuple[list[Part[_Job]], list[Tensor]]:
        parts = self._queue.take(self.max_batch_windows)
        windows: list[Tensor] = []
        now = time.monotonic()
        for part in parts:
            windows.extend(part.job.take(part.count))
            if self._queue.queued_of(part.job):
                part.job.pending_since = now
        self._set_queued_locked(self._queue.queued)
        self._wake_blocked_locked()
        return parts, windows

    def _compute(self, parts: list[Part[_Job]], windows: list[Tensor]) -> None:
        size = sum(part.count for part in parts)
        batch = self._staging[:size]
        offset = 0
        for rows in windows:
            batch[offset : offset + rows.shape[0]].copy_(rows)
            offset += rows.shape[0]
        del windows
        started = time.monotonic()
        self._batch_started = started
        try:
            scores = self._infer(batch)
            if scores.dim() != 2 or scores.shape[0] != size:
                raise RuntimeError(f"the model returned {tuple(scores.shape)} for {size} windows")
        except Exception as error:
            self._batch_started = None
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
        self._batch_started = None
        elapsed = time.monotonic() - started
        if self._metrics:
            self._metrics.batch_compute.observe(elapsed)
            self._metrics.batch_size.observe(size)
        with self._cond:
            offset = 0
            for part in parts:
                job = part.job
                if job.state is _State.ACTIVE:
                    job.rows[part.first] = scores[offset : offset + part.count].clone()
                    job.compute_seconds += elapsed
                    job.batches += 1
                    if self._queue.complete(part):
                        self._finish_locked(job, _State.DONE, self._result(job))
                offset += part.count

    @staticmethod
    def _result(job: _Job) -> BatchResult:
        total = time.monotonic() - job.enqueued_at
        return BatchResult(
            scores=job.scores(),
            queue_seconds=max(0.0, total - job.compute_seconds),
            compute_seconds=job.compute_seconds,
            batches=job.batches,
        )

    # ----- bookkeeping (call with the lock held) -------------------------------------------

    def _set_queued_locked(self, value: int) -> None:
        self._queued = value
        if self._metrics:
            self._metrics.queued_windows.set(value)

    def _wake_blocked_locked(self) -> None:
        for job in self._blocked:
            # A closed event loop raises RuntimeError: then nobody is waiting any more.
            with contextlib.suppress(RuntimeError):
                job.loop.call_soon_threadsafe(job.room.set)
        self._blocked.clear()

    def _drop_queued_locked(self, job: _Job, reason: str) -> None:
        """Take a job out of the queue, with its windows not batched yet."""
        dropped = self._queue.drop(job)
        job.release()
        if dropped == 0:
            return
        self._set_queued_locked(self._queue.queued)
        self._wake_blocked_locked()
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
        self._blocked.discard(job)
        # A closed event loop raises RuntimeError: then nobody is waiting any more.
        with contextlib.suppress(RuntimeError):
            job.loop.call_soon_threadsafe(_resolve, job.future, outcome)
            job.loop.call_soon_threadsafe(job.room.set)
