"""One queue of analysis windows from many jobs, and which batch took which of them.

Both batchers fill their batches from this queue: the service's dynamic batcher (a job is one
request) and `tagger tag`'s batch tagger (a job is one file). A job's windows are taken in order
and may be spread over several batches. Each piece of a batch is a `Part` (job, first window,
count); reporting the parts back with `complete` says when a job's last window has been scored.

Two orders: FIFO (a batch takes windows of as many jobs as it needs, oldest job first; the batch
tagger) or fair (a batch shares its room equally among the jobs with queued windows, round-robin
from batch to batch; the service, so a long recording cannot hold the model while short clips
wait). A job may be streamed: `add` it with its first windows and `open=True`, `extend` it as
more are decoded, and `close` it after the last; it completes only once closed.

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
        """Up to `limit` windows: oldest job first, or shared among the jobs when fair."""
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        parts: dict[J, Part[J]] = {}
        room = limit
        while room and self._waiting:
            # FIFO gives the head job all the room; fair gives each waiting job an equal share
            # and sends it to the back of the line, so the next batch starts with the others.
            share = max(1, room // len(self._waiting)) if self.fair else room
            for _ in range(len(self._waiting)):
                if not room:
                    break
                job = self._waiting.popleft()
                progress = self._progress[job]
                count = min(share, room, progress.available)
                earlier = parts.get(job)
                first = progress.taken if earlier is None else earlier.first
                parts[job] = Part(job, first, count + (0 if earlier is None else earlier.count))
                progress.taken += count
                room -= count
                if progress.available:
                    if self.fair:
                        self._waiting.append(job)
                    else:
                        self._waiting.appendleft(job)
                        break
        self._queued -= limit - room
        return list(parts.values())

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
