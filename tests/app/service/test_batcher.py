"""The window batcher with the real (untrained) q2l-small model behind it.

Where a test needs the model to be busy or to fail at a known moment, the model call is wrapped
(a gate that holds a batch until the test opens it, or a fault on a marked window); the model
itself always runs for real.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from torch import Tensor

from app.pipeline.defaults import InferFn
from app.service.batcher import (
    Batcher,
    BatcherStoppedError,
    BatchFailedError,
    DeadlineExceededError,
)
from app.service.metrics import Metrics
from model.checkpoint import load_checkpoint
from model.runtime import Runtime, RuntimeOptions, batch_shapes, split_sizes

pytestmark = pytest.mark.anyio

WINDOW = 59049
MARKER = 7.0  # a window whose first sample is this makes the faulty model raise


@pytest.fixture(scope="module")
def infer(checkpoint: Path) -> InferFn:
    options = RuntimeOptions(precision="fp32", compile="off")
    return Runtime(load_checkpoint(checkpoint).model, torch.device("cpu"), options)


class Gate:
    """Wraps the model call: each batch waits until the test opens the gate."""

    def __init__(self, infer: InferFn) -> None:
        self.infer = infer
        self.opened = threading.Event()
        self.entered = threading.Event()
        self.calls: list[int] = []

    def __call__(self, windows: Tensor) -> Tensor:
        self.entered.set()
        assert self.opened.wait(30), "the test never opened the gate"
        self.calls.append(int(windows.shape[0]))
        return self.infer(windows)

    async def wait_entered(self) -> None:
        assert await asyncio.to_thread(self.entered.wait, 30)


def faulty(infer: InferFn) -> InferFn:
    """The real model, except that batches holding a marked window raise."""

    def call(windows: Tensor) -> Tensor:
        if bool((windows[:, 0] == MARKER).any()):
            raise RuntimeError("injected fault")
        return infer(windows)

    return call


def windows(n: int, seed: int, marked: bool = False) -> Tensor:
    generator = torch.Generator().manual_seed(seed)
    out = 0.1 * torch.randn(n, WINDOW, generator=generator)
    if marked:
        out[:, 0] = MARKER
    return out


def make(
    infer: InferFn,
    warm_up: Callable[[], object] | None = None,
    *,
    fair: bool = True,
    **overrides: float,
) -> tuple[Batcher, Metrics]:
    metrics = Metrics()
    options: dict[str, float] = {
        "max_batch_windows": 8,
        "max_wait_s": 0.3,
        "max_queued_windows": 64,
    }
    options.update(overrides)
    batcher = Batcher(
        infer,
        window_samples=WINDOW,
        max_batch_windows=int(options["max_batch_windows"]),
        max_wait_s=options["max_wait_s"],
        max_queued_windows=int(options["max_queued_windows"]),
        fair=fair,
        metrics=metrics,
        warm_up=warm_up,
    )
    return batcher, metrics


@pytest.fixture
def stopper() -> Iterator[list[Batcher]]:
    """Batchers registered here are stopped after the test, whatever happened."""
    batchers: list[Batcher] = []
    yield batchers
    for batcher in batchers:
        batcher.stop(timeout=30)


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def later(seconds: float) -> float:
    return time.monotonic() + seconds


def test_batch_shapes_are_powers_of_two_and_the_maximum() -> None:
    assert batch_shapes(1) == (1,)
    assert batch_shapes(8) == (1, 2, 4, 8)
    assert batch_shapes(48) == (1, 2, 4, 8, 16, 32, 48)
    assert split_sizes(9, batch_shapes(64)) == [8, 1]
    assert split_sizes(47, batch_shapes(48)) == [32, 8, 4, 2, 1]
    assert split_sizes(48, batch_shapes(48)) == [48]
    with pytest.raises(ValueError, match="positive"):
        batch_shapes(0)


async def test_requests_share_a_batch_and_each_gets_its_own_windows(
    infer: InferFn, stopper: list[Batcher]
) -> None:
    batcher, metrics = make(infer)
    stopper.append(batcher)
    batcher.start(warmup=False)
    inputs = [windows(1, seed=1), windows(3, seed=2), windows(2, seed=3)]
    results = await asyncio.gather(*(batcher.submit(w, deadline=later(60)) for w in inputs))
    # One batch of 6 windows from three requests (computed as chunks of 4 and 2).
    assert sample(metrics, "tagger_batch_size_windows_count") == 1
    assert sample(metrics, "tagger_batch_size_windows_sum") == 6
    for given, result in zip(inputs, results, strict=True):
        assert result.scores.shape == (given.shape[0], 50)
        torch.testing.assert_close(result.scores, infer(given), atol=1e-4, rtol=1e-4)
        assert result.batches == 1
        assert result.compute_seconds > 0


async def test_a_full_batch_goes_without_waiting_and_batches_are_capped(
    infer: InferFn, stopper: list[Batcher]
) -> None:
    gate = Gate(infer)
    gate.opened.set()
    batcher, metrics = make(gate, max_batch_windows=4, max_wait_s=60.0)
    stopper.append(batcher)
    batcher.start(warmup=False)
    async with asyncio.timeout(30):  # would take 60 s if a full batch waited for company
        result = await batcher.submit(windows(8, seed=4), deadline=later(120))
    assert result.batches == 2
    assert gate.calls == [4, 4]
    assert sample(metrics, "tagger_batch_size_windows_count") == 2


async def test_a_batch_goes_to_the_model_in_one_call(
    infer: InferFn, stopper: list[Batcher]
) -> None:
    # Chunk shapes are the runtime's business (it cuts 7 windows into 4 + 2 + 1 itself).
    gate = Gate(infer)
    gate.opened.set()
    batcher, _ = make(gate, max_batch_windows=8, max_wait_s=0.0)
    stopper.append(batcher)
    batcher.start(warmup=False)
    await batcher.submit(windows(7, seed=5), deadline=later(60))
    assert gate.calls == [7]


async def test_the_runtime_runs_a_batch_in_warmed_up_chunk_shapes(checkpoint: Path) -> None:
    calls: list[int] = []
    model = load_checkpoint(checkpoint).model
    forward = model.forward

    def counting(windows: Tensor) -> Tensor:
        calls.append(int(windows.shape[0]))
        return forward(windows)

    model.forward = counting  # type: ignore[method-assign, assignment]
    options = RuntimeOptions(precision="fp32", compile="off")
    runtime = Runtime(model, torch.device("cpu"), options, max_batch=8)
    assert runtime(windows(7, seed=5)).shape == (7, 50)
    assert calls == [4, 2, 1]


async def test_warm_up_runs_on_the_worker_before_ready(
    infer: InferFn, stopper: list[Batcher]
) -> None:
    entered, opened = threading.Event(), threading.Event()
    threads: list[str] = []

    def warm_up() -> None:
        threads.append(threading.current_thread().name)
        entered.set()
        assert opened.wait(30), "the test never let warm-up finish"

    batcher, _ = make(infer, warm_up=warm_up, max_batch_windows=6)
    stopper.append(batcher)
    batcher.start(warmup=True)
    assert await asyncio.to_thread(entered.wait, 30)
    assert not batcher.ready
    opened.set()
    async with asyncio.timeout(30):
        while not batcher.ready:  # noqa: ASYNC110 - the flag is set by another thread
            await asyncio.sleep(0.01)
    assert threads == ["tagger-batcher"]


async def test_a_failing_warm_up_never_reports_ready(
    infer: InferFn, stopper: list[Batcher]
) -> None:
    def broken() -> None:
        raise RuntimeError("no model here")

    batcher, _ = make(infer, warm_up=broken)
    stopper.append(batcher)
    batcher.start(warmup=True)
    async with asyncio.timeout(30):
        while batcher.warmup_error is None:  # noqa: ASYNC110 - set by the worker thread
            await asyncio.sleep(0.01)
    assert not batcher.ready
    assert "no model here" in batcher.warmup_error


async def test_windows_over_the_bound_wait_for_room_instead_of_failing(
    infer: InferFn, stopper: list[Batcher]
) -> None:
    gate = Gate(infer)
    batcher, metrics = make(gate, max_batch_windows=4, max_queued_windows=8, max_wait_s=0.0)
    stopper.append(batcher)
    batcher.start(warmup=False)
    first = asyncio.ensure_future(batcher.submit(windows(4, seed=6), deadline=later(60)))
    await gate.wait_entered()  # the model holds the first batch; the queue is empty again
    second = asyncio.ensure_future(batcher.submit(windows(6, seed=7), deadline=later(60)))
    await asyncio.sleep(0.05)
    assert batcher.queued_windows == 6
    assert sample(metrics, "tagger_queued_windows") == 6
    third = asyncio.ensure_future(batcher.submit(windows(3, seed=8), deadline=later(60)))
    big = asyncio.ensure_future(batcher.submit(windows(9, seed=9), deadline=later(60)))
    await asyncio.sleep(0.05)
    assert batcher.queued_windows == 6  # neither fits beside the six: both wait, none fails
    assert not third.done()
    assert not big.done()
    gate.opened.set()
    assert (await first).scores.shape == (4, 50)
    assert (await second).scores.shape == (6, 50)
    assert (await third).scores.shape == (3, 50)
    assert (await big).scores.shape == (9, 50)


async def test_a_long_stream_enters_a_few_windows_at_a_time_and_short_requests_overtake_it(
    infer: InferFn, stopper: list[Batcher]
) -> None:
    batcher = Batcher(
        infer,
        window_samples=WINDOW,
        max_batch_windows=8,
        max_wait_s=0.0,
        max_queued_windows=64,
        max_request_queued_windows=4,
    )
    stopper.append(batcher)
    batcher.start(warmup=False)
    done: list[str] = []

    async def long() -> None:
        stream = batcher.open(deadline=later(5), deadline_per_window_s=1.0)
        for group in range(10):
            await stream.put(windows(4, seed=100 + group))
            assert batcher.queued_windows <= 4 + 2  # its share, beside the short request
        assert stream.windows == 40
        assert stream.deadline > later(40)  # five seconds, plus one per window put
        stream.close()
        result = await stream.result()
        assert result.scores.shape == (40, 50)
        done.append("long")

    async def short() -> None:
        await asyncio.sleep(0.2)
        result = await batcher.submit(windows(2, seed=99), deadline=later(60))
        assert result.scores.shape == (2, 50)
        done.append("short")

    await asyncio.gather(long(), short())
    assert done == ["short", "long"]


async def test_a_stream_gets_the_rows_it_would_get_at_once(
    infer: InferFn, stopper: list[Batcher]
) -> None:
    batcher, _ = make(infer, max_wait_s=0.0)
    stopper.append(batcher)
    batcher.start(warmup=False)
    whole = windows(11, seed=30)
    at_once = await batcher.submit(whole, deadline=later(60))
    stream = batcher.open(deadline=later(60))
    for first, count in [(0, 3), (3, 1), (4, 7)]:
        await stream.put(whole[first : first + count])
    stream.close()
    streamed = await stream.result()
    torch.testing.assert_close(streamed.scores, at_once.scores, rtol=0, atol=1e-6)
    expected = infer(whole)
    torch.testing.assert_close(streamed.scores, expected, rtol=0, atol=1e-5)


async def test_windows_past_their_deadline_are_dropped_before_compute(
    infer: InferFn, stopper: list[Batcher]
) -> None:
    gate = Gate(infer)
    batcher, metrics = make(gate, max_batch_windows=4, max_wait_s=0.0)
    stopper.append(batcher)
    batcher.start(warmup=False)
    busy = asyncio.ensure_future(batcher.submit(windows(4, seed=10), deadline=later(60)))
    await gate.wait_entered()
    with pytest.raises(DeadlineExceededError):
        await batcher.submit(windows(3, seed=11), deadline=later(0.2))
    assert batcher.queued_windows == 0
    assert sample(metrics, "tagger_dropped_windows_total", reason="deadline") == 3
    gate.opened.set()
    await busy
    await asyncio.sleep(0.1)
    assert gate.calls == [4]  # the late request's windows never reached the model


async def test_a_cancelled_request_drops_its_queued_windows(
    infer: InferFn, stopper: list[Batcher]
) -> None:
    gate = Gate(infer)
    batcher, metrics = make(gate, max_batch_windows=4, max_wait_s=0.0)
    stopper.append(batcher)
    batcher.start(warmup=False)
    busy = asyncio.ensure_future(batcher.submit(windows(4, seed=12), deadline=later(60)))
    await gate.wait_entered()
    abandoned = asyncio.ensure_future(batcher.submit(windows(2, seed=13), deadline=later(60)))
    await asyncio.sleep(0.05)
    assert batcher.queued_windows == 2
    abandoned.cancel()
    with pytest.raises(asyncio.CancelledError):
        await abandoned
    assert batcher.queued_windows == 0
    assert sample(metrics, "tagger_dropped_windows_total", reason="cancelled") == 2
    gate.opened.set()
    await busy
    await asyncio.sleep(0.1)
    assert gate.calls == [4]


async def test_a_failing_batch_fails_only_its_own_requests(
    infer: InferFn, stopper: list[Batcher]
) -> None:
    batcher, metrics = make(faulty(infer), fair=False, max_batch_windows=2)
    stopper.append(batcher)
    batcher.start(warmup=False)
    # FIFO with 2-window batches: [before], [marked], [after].
    before, marked, after = await asyncio.gather(
        batcher.submit(windows(2, seed=14), deadline=later(60)),
        batcher.submit(windows(2, seed=15, marked=True), deadline=later(60)),
        batcher.submit(windows(2, seed=16), deadline=later(60)),
        return_exceptions=True,
    )
    assert isinstance(marked, BatchFailedError)
    assert "injected fault" in str(marked)
    assert not isinstance(before, BaseException)
    assert before.scores.shape == (2, 50)
    assert not isinstance(after, BaseException)
    assert after.scores.shape == (2, 50)
    assert sample(metrics, "tagger_failed_batches_total") == 1
    # The worker keeps serving.
    again = await batcher.submit(windows(1, seed=17), deadline=later(60))
    assert again.scores.shape == (1, 50)


async def test_requests_sharing_a_failing_batch_all_fail(
    infer: InferFn, stopper: list[Batcher]
) -> None:
    batcher, metrics = make(faulty(infer), fair=False, max_batch_windows=8)
    stopper.append(batcher)
    batcher.start(warmup=False)
    # Three windows in one batch of 8; the middle request's first window is marked, and the
    # last request has 7 windows of which 6 fit: its remaining window is dropped, not computed.
    results = await asyncio.gather(
        batcher.submit(windows(1, seed=18), deadline=later(60)),
        batcher.submit(windows(1, seed=19, marked=True), deadline=later(60)),
        batcher.submit(windows(7, seed=20), deadline=later(60)),
        return_exceptions=True,
    )
    assert all(isinstance(result, BatchFailedError) for result in results)
    assert sample(metrics, "tagger_dropped_windows_total", reason="failed") == 1
    assert batcher.queued_windows == 0


async def test_stopping_fails_queued_requests_and_finishes_the_running_batch(
    infer: InferFn,
) -> None:
    gate = Gate(infer)
    batcher, _ = make(gate, max_batch_windows=2, max_wait_s=0.0)
    batcher.start(warmup=False)
    running = asyncio.ensure_future(batcher.submit(windows(2, seed=21), deadline=later(60)))
    await gate.wait_entered()
    queued = asyncio.ensure_future(batcher.submit(windows(2, seed=22), deadline=later(60)))
    await asyncio.sleep(0.05)
    stopping = asyncio.ensure_future(asyncio.to_thread(batcher.stop))
    await asyncio.sleep(0.05)
    gate.opened.set()
    await stopping
    assert (await running).scores.shape == (2, 50)
    with pytest.raises(BatcherStoppedError):
        await queued
    with pytest.raises(BatcherStoppedError):
        await batcher.submit(windows(1, seed=23), deadline=later(60))
