"""Run the service under uvicorn with a shutdown that loses no request.

On SIGTERM (what Kubernetes, Docker and systemd send):

1. drain: `/readyz` answers 503 "shutting down" (and `tagger_ready` drops to 0) for
   `shutdown_drain_s` while requests are still accepted and served, so load balancers and
   Kubernetes endpoints stop routing here before the listener goes away;
2. stop: uvicorn closes the listener and idle connections, and in-flight requests finish;
3. if any are still waiting after `shutdown_timeout_s`, the batcher is stopped: their queued
   windows are dropped and they are answered 503 with `Retry-After`, so no client is left
   without a response;
4. the lifespan shuts the service down and the process exits with status 0.

A second SIGTERM skips what is left of the drain. SIGINT (Ctrl-C) skips the drain and keeps
uvicorn's own behaviour. Uvicorn re-raises the signal it stopped for after shutting down, so a
process stopped by SIGTERM would report death by signal instead of success; SIGTERM is the
normal way to stop a service, so it is not re-raised.

Two bounds keep a stuck process from lingering (docs/reliability.md, "liveness"):

- shutdown: if the process is still running `shutdown_hard_limit_s` after the first SIGTERM
  (a batch stuck in a hung kernel never returns, so the batcher never stops), it logs one
  line saying why and exits with status 70, within the orchestrator's grace period;
- watchdog: the event loop re-arms a timer in C (`faulthandler.dump_traceback_later`) every
  second. If the loop has not run for `watchdog_s` (a frozen interpreter: no handler, no
  health check can run), that timer writes every thread's stack and exits with status 1. A
  batch stuck for `watchdog_s` beyond `stuck_batch_s` (the event loop runs, `/healthz` says
  503) ends the process too, so a restart policy without health checks (Docker's
  `restart: unless-stopped`, systemd) replaces it.
"""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import logging
import os
import signal
import socket
import sys
import threading
import time
from types import FrameType

import uvicorn
from fastapi import FastAPI

from app.service.settings import Settings

logger = logging.getLogger("tagger.server")

# uvicorn's exit status when the app fails to start (e.g. an unreadable checkpoint).
STARTUP_FAILURE = 3
# Time between stopping the batcher and uvicorn giving up on connections: enough to send the
# 503s of requests that were still queued.
_ANSWER_MARGIN_S = 2.0
# Exit status when the shutdown bound forced the exit (EX_SOFTWARE).
FORCED_EXIT = 70
# After the shutdown bound, the C-level timer's margin for an interpreter too frozen to exit.
_LAST_RESORT_MARGIN_S = 5.0


class GracefulServer(uvicorn.Server):
    """uvicorn.Server with a readiness drain on SIGTERM and a last-resort 503 for stragglers.

    Args:
        config: The uvicorn configuration; its `timeout_graceful_shutdown` is overridden.
        app: The FastAPI app (its `state.draining` flag is set, its service stopped).
        settings: `shutdown_drain_s` and `shutdown_timeout_s`.
    """

    def __init__(self, config: uvicorn.Config, *, app: FastAPI, settings: Settings) -> None:
        config.timeout_graceful_shutdown = int(settings.shutdown_timeout_s + _ANSWER_MARGIN_S)
        super().__init__(config)
        self.app = app
        self.drain_s = settings.shutdown_drain_s
        self.stop_after_s = settings.shutdown_timeout_s
        self._drain_started: float | None = None
        self._drain_logged = False
        self.hard_limit_s = settings.shutdown_hard_limit_s
        self.watchdog_s = settings.watchdog_s
        self.stuck_batch_s = settings.stuck_batch_s
        self._hard_stop: threading.Timer | None = None
        self._last_rearm = 0.0
        self._stuck_logged = False
        app.state.draining = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Runs in a signal handler: set flags only (no logging, no event-loop calls).
        if self._hard_stop is None:
            self._arm_hard_stop()
        if sig != signal.SIGTERM:
            super().handle_exit(sig, frame)
            return
        if self._drain_started is None and self.drain_s > 0 and not self.should_exit:
            self._drain_started = time.monotonic()
            self.app.state.draining = True
        else:
            self.should_exit = True

    def _arm_hard_stop(self) -> None:
        """Make sure the process ends within `hard_limit_s` of the first stop signal."""
        self._hard_stop = threading.Timer(self.hard_limit_s, self._force_exit)
        self._hard_stop.daemon = True
        self._hard_stop.start()
        # The watchdog's C timer now only guards an interpreter too frozen for the timer thread.
        faulthandler.dump_traceback_later(self.hard_limit_s + _LAST_RESORT_MARGIN_S, exit=True)
        self.watchdog_s = 0.0

    def disarm(self) -> None:
        """The server stopped in time: cancel both timers."""
        faulthandler.cancel_dump_traceback_later()
        if self._hard_stop is not None:
            self._hard_stop.cancel()

    def _force_exit(self) -> None:
        service = getattr(self.app.state, "service", None)
        running = 0.0 if service is None else service.running_batch_seconds
        why = f"a batch has been running for {running:.0f} s" if running else "shutdown hangs"
        logger.error(
            "exiting with status %d: still running %.0f s after the stop signal (%s)",
            FORCED_EXIT,
            self.hard_limit_s,
            why,
        )
        for handler in logging.getLogger().handlers:
            handler.flush()
        os._exit(FORCED_EXIT)

    def _watch(self) -> None:
        """Re-arm the watchdog; end the process when a batch is stuck well past its bound."""
        now = time.monotonic()
        if not self.watchdog_s or now - self._last_rearm < 1.0:
            return
        self._last_rearm = now
        service = getattr(self.app.state, "service", None)
        running = 0.0 if service is None else service.running_batch_seconds
        if self.stuck_batch_s and running > self.stuck_batch_s + self.watchdog_s:
            logger.error(
                "exiting with status 1: a batch has been running for %.0f s (stuck_batch_s %g "
                "s, watchdog_s %g s); a restart policy replaces this process",
                running,
                self.stuck_batch_s,
                self.watchdog_s,
            )
            for handler in logging.getLogger().handlers:
                handler.flush()
            os._exit(1)
        faulthandler.dump_traceback_later(self.watchdog_s, exit=True, file=sys.stderr)

    async def on_tick(self, counter: int) -> bool:
        self._watch()
        if self._drain_started is not None and not self.should_exit:
            if not self._drain_logged:
                self._drain_logged = True
                logger.info("SIGTERM: reporting unready for %.1f s before stopping", self.drain_s)
            if time.monotonic() - self._drain_started >= self.drain_s:
                self.should_exit = True
        return await super().on_tick(counter)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.app.state.draining = True
        stragglers = asyncio.create_task(self._answer_stragglers())
        try:
            await super().shutdown(sockets)
        finally:
            stragglers.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stragglers

    async def _answer_stragglers(self) -> None:
        await asyncio.sleep(self.stop_after_s)
        service = getattr(self.app.state, "service", None)
        if service is None:
            return
        logger.warning(
            "requests still in flight %.1f s after shutdown began: answering queued ones 503",
            self.stop_after_s,
        )
        await asyncio.to_thread(service.stop_batching)


def run_server(app: FastAPI, settings: Settings) -> int:
    """Serve `app` on `settings.host`:`settings.port` until SIGTERM or SIGINT.

    Returns:
        The exit status: 0 after a shutdown, 3 (uvicorn's) when start-up failed.
    """
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        lifespan="on",
    )
    server = GracefulServer(config, app=app, settings=settings)
    try:
        with contextlib.suppress(KeyboardInterrupt):
            server.run()
    finally:
        server.disarm()
    return 0 if server.started else STARTUP_FAILURE
