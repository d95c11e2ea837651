"""Helpers of the hardening tests: budgets, figures for docs/reliability.md, process memory,
problem-body checks and an open-loop load generator."""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.service.problems import PROBLEM_JSON, TYPE_PREFIX

# `make hardening` sets HARDENING_FULL=1: the long budgets below, and the tests that only run
# there. `make test` runs the short budgets.
FULL = os.environ.get("HARDENING_FULL") == "1"
RESULTS = os.environ.get("HARDENING_RESULTS")

long_only = pytest.mark.skipif(not FULL, reason="long test: run with `make hardening`")


def budget(short: int, full: int) -> int:
    return full if FULL else short


def record(test: str, **figures: Any) -> None:
    """Keep figures for docs/reliability.md (written by scripts/hardening/report.py)."""
    if not RESULTS:
        return
    with Path(RESULTS).open("a") as out:
        out.write(json.dumps({"test": test, **figures}) + "\n")


def _status_field(pid: int, name: str) -> int:
    status = Path(f"/proc/{pid}/status")
    if not status.exists():
        if os.environ.get("CI") == "true":
            raise RuntimeError("/proc/<pid>/status is needed to measure memory")
        pytest.skip("memory is read from /proc/<pid>/status, which this system lacks")
    for line in status.read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1]) * 1024  # kB
    raise RuntimeError(f"no {name} in {status}")


def peak_rss(pid: int) -> int:
    """Peak resident memory of a process so far, in bytes (the kernel's high-water mark)."""
    return _status_field(pid, "VmHWM")


def rss(pid: int) -> int:
    return _status_field(pid, "VmRSS")


def problem_type(response: httpx.Response) -> str:
    """The problem slug of a 4xx/5xx response; fails unless it is RFC 9457 problem details."""
    assert response.headers.get("content-type") == PROBLEM_JSON, (
        response.status_code,
        response.text[:300],
    )
    body = response.json()
    assert body["status"] == response.status_code
    assert body["title"]
    assert body["detail"]
    assert "Traceback" not in response.text
    slug: str = body["type"].removeprefix(TYPE_PREFIX)
    return slug


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0-1) by the nearest-rank method; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q * len(ordered) + 0.5)))
    return ordered[rank - 1]


@dataclass
class Outcome:
    """One request of a load run."""

    started: float
    seconds: float
    status: int | None  # None: no HTTP answer (connection refused, reset, timeout)
    retry_after: str | None = None
    problem: str | None = None  # the problem type of an error answer
    error: str | None = None


@dataclass
class LoadRun:
    """What an open-loop load run sent and got back."""

    outcomes: list[Outcome] = field(default_factory=list)
    sending_ended: float = 0.0

    def statuses(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for outcome in self.outcomes:
            key = str(outcome.status) if outcome.status is not None else "no answer"
            counts[key] = counts.get(key, 0) + 1
        return dict(sorted(counts.items()))

    def latencies(self, status: int) -> list[float]:
        return [o.seconds for o in self.outcomes if o.status == status]

    def unanswered(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status is None]


async def open_loop(
    url: str,
    *,
    rate: float,
    seconds: float,
    files: dict[str, tuple[str, bytes, str]],
    request_timeout: float = 60.0,
    stop: asyncio.Event | None = None,
) -> LoadRun:
    """POST `files` to `url` at `rate` requests per second for `seconds`, whatever the answers.

    Open loop: a slow server does not slow the sender down (closed-loop clients would, and
    hide overload). Every request is awaited to its end; one that gets no HTTP answer within
    `request_timeout` is recorded with status None. Setting `stop` ends sending early.
    """
    run = LoadRun()
    # Encode the multipart body once: the sender shares the CPU with the server.
    template = httpx.Request("POST", url, files=files)
    body = template.read()
    headers = {"content-type": template.headers["content-type"]}
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=64)
    async with httpx.AsyncClient(timeout=request_timeout, limits=limits) as client:

        async def one() -> None:
            started = time.monotonic()
            try:
                response = await client.post(url, content=body, headers=headers)
                outcome = Outcome(
                    started,
                    time.monotonic() - started,
                    response.status_code,
                    response.headers.get("retry-after"),
                    problem_type(response) if response.status_code >= 400 else None,
                )
            except httpx.TransportError as error:
                outcome = Outcome(
                    started, time.monotonic() - started, None, error=type(error).__name__
                )
            run.outcomes.append(outcome)

        tasks = []
        begin = time.monotonic()
        sent = 0
        while time.monotonic() - begin < seconds and not (stop and stop.is_set()):
            due = begin + sent / rate
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            tasks.append(asyncio.create_task(one()))
            sent += 1
        run.sending_ended = time.monotonic()
        await asyncio.gather(*tasks)
    return run
