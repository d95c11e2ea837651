"""Hot reload of tag sets: on SIGHUP, or when the files `TAGGER_TAG_SETS` names change, the
service swaps in a model with the new tag sets without a restart.

Atomic by construction: the new `TaggingService` (model, vocabulary, thresholds, batcher,
decoders) is built and warmed up beside the one serving, and only a ready one replaces it, in one
assignment of `app.state.service`. Every request takes the service once, when it starts
(`routes.get_service`), and keeps it to the end, so no request ever sees two vocabularies or
half-loaded tag sets. The old service finishes the requests it holds, then closes. A reload that
fails (an unreadable set, a set of another base, colliding tag ids) keeps serving what was
served, and says why in the log and in the `tag_set_reloads_total{outcome}` counter.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from fastapi import FastAPI

from app.service.tagging import TaggingService
from model.checkpoint import CheckpointError
from model.tagset import TagSetError, find_tag_sets

logger = logging.getLogger("tagger.reload")

Fingerprint = tuple[tuple[str, int, int], ...] | str


def fingerprint(paths: tuple[Path, ...]) -> Fingerprint:
    """What the tag set paths hold now: each file's path, mtime and size (or the error)."""
    try:
        files = find_tag_sets(paths)
        return tuple((str(f), f.stat().st_mtime_ns, f.stat().st_size) for f in files)
    except (TagSetError, OSError) as error:
        return f"error: {error}"


class TagSetReloader:
    """Rebuilds and swaps the app's service; one reload at a time.

    Args:
        app: The FastAPI app whose `state.service` (and `state.similar`) it replaces.
        build: Makes a new, not yet started `TaggingService` from the current files.
        rebuild_similar: Makes the similarity service for a new tagging service (or None).
        on_swap: Called with the new service after a swap (to republish gauges).
        drain_timeout_s: How long the old service may finish its requests before it closes.
    """

    def __init__(
        self,
        app: FastAPI,
        build: Callable[[], TaggingService],
        *,
        paths: tuple[Path, ...],
        rebuild_similar: Callable[[TaggingService], Any] | None = None,
        on_swap: Callable[[TaggingService], None] | None = None,
        drain_timeout_s: float = 120.0,
        ready_timeout_s: float = 900.0,
    ) -> None:
        self.app = app
        self.build = build
        self.paths = paths
        self.rebuild_similar = rebuild_similar
        self.on_swap = on_swap
        self.drain_timeout_s = drain_timeout_s
        self.ready_timeout_s = ready_timeout_s
        self.seen = fingerprint(paths)
        self.reloads = 0
        self.last_error: str | None = None
        self._lock = asyncio.Lock()

    async def reload(self, reason: str) -> bool:
        """Build, warm up and swap in a service with the current tag sets; False if it failed."""
        async with self._lock:
            self.seen = fingerprint(self.paths)
            logger.info("reloading tag sets (%s)", reason)
            try:
                new = await asyncio.to_thread(self.build)
            except (TagSetError, CheckpointError, OSError) as error:
                self.last_error = str(error)
                logger.warning("kept the served tag sets: %s", error)
                self._count("failed")
                return False
            await new.start()
            deadline = time.monotonic() + self.ready_timeout_s
            # Readiness is set on the batcher's thread: polled, as /readyz is.
            while not new.ready and new.warmup_error is None and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            similar = None
            try:
                if not new.ready:
                    raise RuntimeError(new.warmup_error or "the new model did not warm up")
                if self.rebuild_similar is not None:
                    similar = await asyncio.to_thread(self.rebuild_similar, new)
            except Exception as error:
                self.last_error = str(error)
                logger.warning("kept the served tag sets: %s", error)
                await new.aclose()
                self._count("failed")
                return False
            old, old_similar = self.app.state.service, self.app.state.similar
            self.app.state.service = new  # one assignment: requests take one or the other
            if self.rebuild_similar is not None:
                self.app.state.similar = similar
            if self.on_swap is not None:
                self.on_swap(new)
            self.reloads += 1
            self.last_error = None
            self._count("ok")
            logger.info("serving %d tags after the reload (%s)", len(new.tags), reason)
            if old is not None:
                await self._drain(old)
                if old_similar is not None:
                    old_similar.close()
                await old.aclose()
                # Closing restores the thread count the old service found; keep the new one's.
                torch.set_num_threads(new.torch_threads)
            return True

    async def _drain(self, old: TaggingService) -> None:
        deadline = time.monotonic() + self.drain_timeout_s
        while old.in_flight > 0 and time.monotonic() < deadline:  # noqa: ASYNC110 - a counter
            await asyncio.sleep(0.05)
        if old.in_flight:
            logger.warning("closing the old model with %d requests still running", old.in_flight)

    async def watch(self, interval_s: float) -> None:
        """Reload whenever the files change (checked every `interval_s`)."""
        while True:
            await asyncio.sleep(interval_s)
            if fingerprint(self.paths) != self.seen:
                await self.reload("the tag set files changed")

    def _count(self, outcome: str) -> None:
        metrics = getattr(self.app.state, "metrics", None)
        counter = getattr(metrics, "tag_set_reloads", None)
        if counter is not None:
            counter.labels(outcome=outcome).inc()
