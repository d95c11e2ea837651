"""One queue of analysis windows from many jobs, and which batch took which of them.

Both batchers fill their batches from this queue: the service's dynamic batcher (a job is one
request) and `tagger tag`'s batch tagger (a job is one file). A job's windows are taken in order
and may be spread over several batches. Each piece of a batch is a `Part` (job, first window,
count); reporting the parts back with `complete` says when a job's last window has been scored.

Two orders: FIFO (a batch takes windows of as many jobs as it needs, oldest job first; the batch
tagger) or fair (the service): every job with queued windows gets one window of the batch, then
the rest of the room goes to the jobs that had the fewest windows computed so far ("least
attained service", which needs no job sizes). So a 30-second clip that arrives while a two-hour
recording is tagged goes ahead of it, and the recording still advances with every batch.

A job may be streamed: `add` it with its first windows and `open=True`, `extend` it as more
are decoded, and `close` it after the last; it completes only once closed.

Thread safety: none of its own, so it costs no lock where there is one thread (the batch
tagger); the service's batcher calls every method with its condition's lock held.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

J = TypeVar("J", bound=Hashable)


@dataclass(frozen=True)
class Part(Generic[J]):
    """Windows `first` to `first + count` of `job`, in one batch."""

    job: J
    first: int
    count: int

    @property
    def end(self) -> int:
        return self.first + self.count


@dataclass
class _Progress:
    windows: int
    taken: int = 0
    scored: int = 0
    closed: bool = True

    @property
    def available(self) -> int:
        return self.windows - self.taken

    @property
    def done(self) -> bool:
        return self.closed and self.scored == self.windows


class WindowQueue(Generic[J]):
    """Jobs with windows, in arrival order; see the module docstring.

    A job is known from `add` until its last window is completed or it is dropped; jobs are
    told apart by hash and equality, so use objects that compare by identity.
    """

    def __init__(self, *, fair: bool = False) -> None:
        self.fair = fair
        self._progress: dict[J, _Progress] = {}
        self._waiting: deque[J] = deque()  # jobs with windows not yet taken, oldest first
        self._queued = 0

    @property
    def queued(self) -> int:
        """Windows added and not yet taken into a batch."""
        return self._queued

    def __len__(self) -> int:
        """Jobs with windows not yet taken."""
        return len(self._waiting)

    def __contains__(self, job: object) -> bool:
        """Whether the job is still known: neither completed nor dropped."""
        return job in self._progress

    def waiting(self) -> list[J]:
        """Jobs with windows not yet taken, oldest first."""
        return list(self._waiting)

    def queued_of(self, job: J) -> int:
        """Windows of `job` added and not yet taken (0 for unknown jobs)."""
        progress = self._progress.get(job)
        return 0 if progress is None else progress.available

    def add(self, job: J, windows: int, *, open: bool = False) -> None:
        """Queue `windows` windows of a new job; `open`: more may follow (`extend`, `close`)."""
        if windows < 1 and not open:
            raise ValueError(f"a job needs at least one window, got {windows}")
        if job in self._progress:
            raise ValueError("the job is already queued")
        self._progress[job] = _Progress(windows, closed=not open)
        if windows:
            self._waiting.append(job)
        self._queued += windows

    def extend(self, job: J, windows: int) -> None:
        """Queue `windows` more windows of an open job, behind its earlier ones."""
        progress = self._progress[job]
        if progress.closed:
            raise ValueError("the job is closed: no windows may be added")
        if windows < 1:
            return
        if not progress.available:
            self._waiting.append(job)
        progress.windows += windows
        self._queued += windows

    def close(self, job: J) -> bool:
        """No more windows for `job`; True when all of them are scored already (the job is then
        forgotten). False for unknown jobs."""
        progress = self._progress.get(job)
        if progress is None:
            return False
        progress.closed = True
        if not progress.done:
            return False
        del self._progress[job]
        return True

    def take(self, limit: int) -> list[Part[J]]:
        """Up to `limit` windows: oldest job first, or least served first when fair."""
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        if self.fair:
            # Least served first (stable: among equals, the oldest); one window each first.
            order = sorted(self._waiting, key=lambda job: self._progress[job].taken)
            counts = dict.fromkeys(order[:limit], 1)
            room = limit - len(counts)
            for job in order:
                if not room:
                    break
                more = min(room, self._progress[job].available - counts.get(job, 0))
                if more > 0:
                    counts[job] = counts.get(job, 0) + more
                    room -= more
        else:
            counts, room = {}, limit
            for job in self._waiting:
                if not room:
                    break
                counts[job] = min(room, self._progress[job].available)
                room -= counts[job]
        parts = []
        for job, count in counts.items():
            progress = self._progress[job]
            parts.append(Part(job, progress.taken, count))
            progress.taken += count
            if not progress.available:
                self._waiting.remove(job)
        self._queued -= limit - room
        return parts

    def complete(self, part: Part[J]) -> bool:
        """Count a part's windows as scored; True when that was the job's last window (the job
        is then forgotten). False for a job that was dropped meanwhile."""
        progress = self._progress.get(part.job)
        if progress is None:
            return False
        progress.scored += part.count
        if not progress.done:
            return False
        del self._progress[part.job]
        return True

    def drop(self, job: J) -> int:
        """Forget a job (cancelled, failed, past its deadline); returns how many of its windows
        had not been taken yet and leave the queue now. Unknown jobs drop nothing."""
        progress = self._progress.pop(job, None)
        if progress is None:
            return 0
        left = progress.available
        if left:
            self._waiting.remove(job)
            self._queued -= left
        return left
