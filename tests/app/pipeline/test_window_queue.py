"""The window queue both batchers share: FIFO across jobs, jobs across batches, completion and
dropping, with the expected numbers written out."""

from __future__ import annotations

import pytest

from app.pipeline.window_queue import Part, WindowQueue


class Job:
    """A job as the batchers' are: compared by identity."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


def spans(parts: list[Part[Job]]) -> list[tuple[str, int, int]]:
    return [(part.job.name, part.first, part.count) for part in parts]


def test_a_batch_takes_windows_across_jobs_oldest_first() -> None:
    queue: WindowQueue[Job] = WindowQueue()
    a, b, c = Job("a"), Job("b"), Job("c")
    queue.add(a, 2)
    queue.add(b, 3)
    queue.add(c, 4)
    assert queue.queued == 9
    assert len(queue) == 3
    assert spans(queue.take(6)) == [("a", 0, 2), ("b", 0, 3), ("c", 0, 1)]
    assert queue.queued == 3
    assert queue.waiting() == [c]


def test_a_job_spans_several_batches_and_completes_with_its_last_window() -> None:
    queue: WindowQueue[Job] = WindowQueue()
    long = Job("long")
    queue.add(long, 10)
    first, second, third = queue.take(4), queue.take(4), queue.take(4)
    assert spans(first) == [("long", 0, 4)]
    assert spans(second) == [("long", 4, 4)]
    assert spans(third) == [("long", 8, 2)]
    assert third[0].end == 10
    assert queue.queued == 0
    assert len(queue) == 0
    # Completion counts scored windows, in whatever order the batches come back.
    assert queue.complete(third[0]) is False
    assert queue.complete(first[0]) is False
    assert long in queue
    assert queue.complete(second[0]) is True
    assert long not in queue


def test_completion_is_per_job_within_one_batch() -> None:
    queue: WindowQueue[Job] = WindowQueue()
    a, b = Job("a"), Job("b")
    queue.add(a, 1)
    queue.add(b, 5)
    parts = queue.take(4)
    assert [queue.complete(part) for part in parts] == [True, False]
    rest = queue.take(4)
    assert spans(rest) == [("b", 3, 2)]
    assert queue.complete(rest[0]) is True


def test_dropping_a_job_removes_its_untaken_windows_and_forgets_it() -> None:
    queue: WindowQueue[Job] = WindowQueue()
    a, b, c = Job("a"), Job("b"), Job("c")
    queue.add(a, 3)
    queue.add(b, 6)
    queue.add(c, 2)
    in_flight = queue.take(5)  # a: 0-3, b: 0-2
    assert queue.drop(b) == 4
    assert queue.queued == 2
    assert queue.waiting() == [c]
    # The part of b already in a batch comes back, but b is gone: no completion.
    assert queue.complete(in_flight[1]) is False
    assert queue.complete(in_flight[0]) is True
    assert spans(queue.take(8)) == [("c", 0, 2)]
    # Dropping a job that is done, or never came, drops nothing.
    assert queue.drop(a) == 0
    assert queue.drop(Job("stranger")) == 0


def test_dropping_a_fully_taken_job_drops_no_windows() -> None:
    queue: WindowQueue[Job] = WindowQueue()
    a = Job("a")
    queue.add(a, 2)
    (part,) = queue.take(8)
    assert queue.drop(a) == 0
    assert a not in queue
    assert queue.complete(part) is False


def test_what_the_queue_refuses() -> None:
    queue: WindowQueue[Job] = WindowQueue()
    a = Job("a")
    with pytest.raises(ValueError, match="at least one window"):
        queue.add(a, 0)
    queue.add(a, 1)
    with pytest.raises(ValueError, match="already queued"):
        queue.add(a, 1)
    with pytest.raises(ValueError, match="at least 1"):
        queue.take(0)
    assert queue.take(3) == [Part(a, 0, 1)]
    assert queue.take(3) == []


def test_fair_order_serves_the_least_served_job_first_and_every_job_a_window() -> None:
    queue: WindowQueue[Job] = WindowQueue(fair=True)
    long, clip = Job("long"), Job("clip")
    queue.add(long, 0, open=True)
    queue.extend(long, 8)
    assert spans(queue.take(8)) == [("long", 0, 8)]
    queue.extend(long, 8)
    queue.add(clip, 9)
    # The clip has had nothing computed: it fills the batch after the long job's one window.
    assert spans(queue.take(8)) == [("clip", 0, 7), ("long", 8, 1)]
    assert spans(queue.take(8)) == [("clip", 7, 2), ("long", 9, 6)]
    assert queue.queued == 1


def test_a_streamed_job_completes_only_once_closed() -> None:
    queue: WindowQueue[Job] = WindowQueue(fair=True)
    job = Job("stream")
    queue.add(job, 0, open=True)
    assert len(queue) == 0  # nothing to take yet
    queue.extend(job, 2)
    (part,) = queue.take(4)
    assert spans([part]) == [("stream", 0, 2)]
    assert not queue.complete(part)  # more windows may follow
    assert job in queue
    assert queue.close(job)  # all two were scored: complete now
    assert job not in queue
    closed = Job("closed")
    queue.add(closed, 1)
    with pytest.raises(ValueError, match="closed"):
        queue.extend(closed, 1)
