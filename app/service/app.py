"""The FastAPI application: `create_app(settings)` wires settings, metrics, service and routes.

The model is loaded in the lifespan (a missing or corrupt checkpoint fails start-up), then the
batcher warms up in its own thread while the server already answers `/healthz`; `/readyz` turns
ready when every batch shape has run once. Requests that arrive during warm-up wait in the queue.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from importlib import metadata
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from app.service.admission import AdmissionMiddleware, client_limit
from app.service.disconnect import ClientDisconnectedError
from app.service.fetch import Resolver
from app.service.logs import record_outcome
from app.service.metrics import Metrics
from app.service.middleware import BodyLimitMiddleware, RequestContextMiddleware
from app.service.page import router as page_router
from app.service.problems import install_problem_handlers
from app.service.ratelimit import RateLimitMiddleware
from app.service.reload import TagSetReloader
from app.service.routes import URL_REQUEST_MAX_BYTES, router
from app.service.settings import Settings
from app.service.similar import SimilarService
from app.service.similar_routes import router as similar_router
from app.service.slowbody import SlowBodyMiddleware
from app.service.tagging import InferWrapper, TaggingService

DESCRIPTION = """
Music auto-tagging with a Query2Label transformer over a ResCNN backbone: 50 MagnaTagATune tags
(genre, mood, instrument, vocals, tempo), each with a probability.

Upload a file to `POST /tag` or name one with `POST /tag/url`. Tracks are cut into windows of
about 3.7 s that share dynamic batches with other requests. Errors are RFC 9457
`application/problem+json` bodies whose `detail` says what to change.
"""


def _version() -> str:
    try:
        return metadata.version("music-tagger")
    except metadata.PackageNotFoundError:
        return "0+unknown"


async def _client_gone(request: Request, exc: Exception) -> Response:
    # Nobody reads this response; 499 (nginx's "client closed request") keeps logs honest.
    record_outcome("cancelled")
    return Response(status_code=499)


def create_app(
    settings: Settings | None = None,
    *,
    wrap_infer: InferWrapper | None = None,
    resolver: Resolver | None = None,
) -> FastAPI:
    """Build the service.

    Args:
        settings: Configuration; `Settings()` (the environment) when omitted.
        wrap_infer: Tests only: wraps the model call so a batch can be made to fail.
        resolver: Tests only: name resolution for URL fetching.
    """
    settings = settings or Settings()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Loading reads and hashes the checkpoint: keep the event loop free meanwhile.
        service = await asyncio.to_thread(
            TaggingService, settings, metrics, wrap_infer=wrap_infer, resolver=resolver
        )
        similar = None
        if settings.catalog is not None:
            try:  # a missing or damaged catalogue stops the start-up, not the first query
                similar = await asyncio.to_thread(SimilarService, settings.catalog, service)
            except BaseException:
                await service.aclose()
                raise
        await service.start()
        app.state.service = service
        app.state.similar = similar

        def publish_ready(current: TaggingService) -> None:
            # Unready while draining for shutdown too (see app/service/server.py), not only
            # while warming up.
            metrics.ready.set_function(
                lambda: float(current.ready and not getattr(app.state, "draining", False))
            )

        publish_ready(service)
        reloader = _tag_set_reloader(app, settings, metrics, publish_ready, wrap_infer, resolver)
        stop_watching = _watch_tag_sets(reloader, settings)
        try:
            yield
        finally:
            stop_watching()
            service = app.state.service  # a reload may have replaced it
            similar = app.state.similar
            app.state.service = None
            app.state.similar = None
            if similar is not None:
                similar.close()
            await service.aclose()

    app = FastAPI(
        title="Music tagger",
        version=_version(),
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.service = None
    app.state.similar = None
    app.state.draining = False
    install_problem_handlers(app)
    app.add_exception_handler(ClientDisconnectedError, _client_gone)
    # Added last = outermost: the request context wraps everything, including the body limit.
    app.add_middleware(
        BodyLimitMiddleware,
        upload_paths=frozenset({"/tag", "/similar"}),
        # The file may use the whole upload limit; multipart framing gets a little extra.
        upload_limit=settings.max_upload_bytes + 16 * 1024,
        upload_limit_text=f"{settings.max_upload_bytes / 1e6:g} MB",
        default_limit=URL_REQUEST_MAX_BYTES,
    )
    app.include_router(router)
    app.include_router(page_router)
    app.include_router(similar_router)
    # Both inside the request context (refusals are logged and counted) and outside the body
    # limit (a refused request's body is never read).
    app.add_middleware(
        AdmissionMiddleware,
        limit=settings.max_inflight_requests,
        client_limit=client_limit(settings.max_inflight_requests, settings.max_client_share),
        retry_after_s=settings.retry_after_s,
    )
    if settings.rate_limit:
        app.add_middleware(RateLimitMiddleware, rate_limit=settings.rate_limit)
    # Outside admission: a stalled body is cut whichever stage waits for it.
    app.add_middleware(
        SlowBodyMiddleware,
        idle_timeout_s=settings.body_idle_timeout_s,
        min_rate_bytes_s=settings.min_body_rate_bytes_s,
        grace_s=settings.body_rate_grace_s,
        metrics=metrics,
    )
    app.add_middleware(RequestContextMiddleware, metrics=metrics)
    return app


def _tag_set_reloader(
    app: FastAPI,
    settings: Settings,
    metrics: Metrics,
    on_swap: Callable[[TaggingService], None],
    wrap_infer: InferWrapper | None,
    resolver: Resolver | None,
) -> TagSetReloader:
    def build() -> TaggingService:
        return TaggingService(settings, metrics, wrap_infer=wrap_infer, resolver=resolver)

    def rebuild_similar(service: TaggingService) -> SimilarService | None:
        return None if settings.catalog is None else SimilarService(settings.catalog, service)

    return TagSetReloader(
        app,
        build,
        paths=settings.tag_sets,
        rebuild_similar=rebuild_similar,
        on_swap=on_swap,
    )


def _watch_tag_sets(reloader: TagSetReloader, settings: Settings) -> Callable[[], None]:
    """Reload on SIGHUP, and on changed files every `tag_sets_poll_s`; returns the undo."""
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[Any]] = set()

    def on_hangup() -> None:
        task = loop.create_task(reloader.reload("SIGHUP"))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    try:
        loop.add_signal_handler(signal.SIGHUP, on_hangup)
        handles_signal = True
    except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or Windows
        handles_signal = False
    watcher = None
    if settings.tag_sets and settings.tag_sets_poll_s > 0:
        watcher = loop.create_task(reloader.watch(settings.tag_sets_poll_s))

    def stop() -> None:
        if handles_signal:
            loop.remove_signal_handler(signal.SIGHUP)
        if watcher is not None:
            watcher.cancel()
        for task in tasks:
            task.cancel()

    return stop
