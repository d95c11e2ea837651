"""One FIFO of analysis windows from many jobs, and which batch took which of them.

Both batchers fill their batches from this queue: the service's dynamic batcher (a job is one
request) and `tagger tag`'s batch tagger (a job is one file). A job's windows are taken in order
and may be spread over several batches; a batch takes windows of as many jobs as it needs, oldest
job first. Each piece of a batch is a `Part` (job, first window, count); reporting the parts back
with `complete` says when a job's last window has been scored.

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


class WindowQueue(Generic[J]):
    """Jobs with windows, in arrival order; see the module docstring.

    A job is known from `add` until its last window is completed or it is dropped; jobs are
    told apart by hash and equality, so use objects that compare by identity.
    """

    def __init__(self) -> None:
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

    def add(self, job: J, windows: int) -> None:
        """Queue `windows` windows of a new job behind everything queued so far."""
        if windows < 1:
            raise ValueError(f"a job needs at least one window, got {windows}")
        if job in self._progress:
            raise ValueError("the job is already queued")
        self._progress[job] = _Progress(windows)
        self._waiting.append(job)
        self._queued += windows

    def take(self, limit: int) -> list[Part[J]]:
        """Up to `limit` windows from the head of the queue, oldest job first."""
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        parts: list[Part[J]] = []
        room = limit
        while room and self._waiting:
            job = self._waiting[0]
            progress = self._progress[job]
            count = min(room, progress.windows - progress.taken)
            parts.append(Part(job, progress.taken, count))
            progress.taken += count
            room -= count
            if progress.taken == progress.windows:
                self._waiting.popleft()
        self._queued -= limit - room
        return parts

    def complete(self, part: Part[J]) -> bool:
        """Count a part's windows as scored; True when that was the job's last window (the job
        is then forgotten). False for a job that was dropped meanwhile."""
        progress = self._progress.get(part.job)
        if progress is None:
            return False
        progress.scored += part.count
        if progress.scored < progress.windows:
            return False
        del self._progress[part.job]
        return True

    def drop(self, job: J) -> int:
        """Forget a job (cancelled, failed, past its deadline); returns how many of its windows
        had not been taken yet and leave the queue now. Unknown jobs drop nothing."""
        progress = self._progress.pop(job, None)
        if progress is None:
            return 0
        left = progress.windows - progress.taken
        if left:
            self._waiting.remove(job)
            self._queued -= left
        return left
