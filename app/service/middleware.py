"""Per-request bookkeeping as a pure ASGI middleware: request id, access log, metrics, and a
last-resort handler that answers an unexpected exception with a problem body, never a trace.

Pure ASGI (not `BaseHTTPMiddleware`) so that the disconnect message still reaches the handler
and streaming request bodies are not buffered.
"""

from __future__ import annotations

import logging
import time

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.service.logs import RequestContext, accept_request_id, enter_context, exit_context
from app.service.metrics import Metrics
from app.service.problems import INTERNAL, UPLOAD_TOO_LARGE, BodyTooLargeError, problem_response

access_logger = logging.getLogger("tagger.access")
logger = logging.getLogger("tagger.errors")

_OUTCOME_BY_STATUS = {404: "not_found", 405: "not_found", 413: "too_large", 499: "cancelled"}


def _outcome(status: int, recorded: str | None) -> str:
    if recorded:
        return recorded
    if status < 400:
        return "ok"
    if status in _OUTCOME_BY_STATUS:
        return _OUTCOME_BY_STATUS[status]
    return "bad_input" if status < 500 else "internal"


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        context = RequestContext(accept_request_id(Headers(scope=scope).get("x-request-id")))
        token = enter_context(context)
        started = time.monotonic()
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = int(message["status"])
                MutableHeaders(scope=message)["X-Request-ID"] = context.request_id
            await send(message)

        self.metrics.inflight.inc()
        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            logger.exception("unhandled error while serving %s", scope.get("path"))
            if not response_started:
                response = problem_response(
                    INTERNAL,
                    "an unexpected error occurred; report the request id to the operator",
                )
                await response(scope, receive, send_with_id)
            context.outcome = "internal"
        finally:
            elapsed = time.monotonic() - started
            self.metrics.inflight.dec()
            route = scope.get("route")
            endpoint = getattr(route, "path", None) or "unmatched"
            outcome = _outcome(status, context.outcome)
            self.metrics.requests.labels(endpoint=endpoint, outcome=outcome).inc()
            self.metrics.request_duration.labels(endpoint=endpoint).observe(elapsed)
            access_logger.info(
                "%s %s %d",
                scope.get("method"),
                scope.get("path"),
                status,
                extra={
                    "method": scope.get("method"),
                    "path": scope.get("path"),
                    "status": status,
                    "outcome": outcome,
                    "duration_ms": round(elapsed * 1000, 2),
                    "client": (scope.get("client") or ("", 0))[0],
                },
            )
            exit_context(token)


class BodyLimitMiddleware:
    """Caps request bodies while they stream in, answering 413 problem details.

    A declared `Content-Length` over the limit is refused before any of the body is read; an
    undeclared (chunked) body is counted as it arrives and refused as soon as the count passes
    the limit, so an oversized upload is never buffered whole. (Starlette's own limiter answers
    with a plain-text 413, which would break the problem+json contract.)

    Args:
        upload_paths: The upload endpoints (`/tag`, `/similar`).
        upload_limit: Body limit for the upload endpoints (the file plus multipart framing).
        upload_limit_text: How to state that limit to users (e.g. "50 MB").
        default_limit: Body limit for every other path.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        upload_paths: frozenset[str],
        upload_limit: int,
        upload_limit_text: str,
        default_limit: int,
    ) -> None:
        self.app = app
        self.upload_paths = upload_paths
        self.upload_limit = upload_limit
        self.upload_limit_text = upload_limit_text
        self.default_limit = default_limit

    def _detail(self, path: str, limit: int) -> str:
        if path in self.upload_paths:
            return (
                f"the upload exceeds the limit of {self.upload_limit_text}: send a smaller or "
                "more compressed file, or ask the operator to raise TAGGER_MAX_UPLOAD_BYTES"
            )
        return f"the request body exceeds the limit of {limit} bytes"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = str(scope.get("path", ""))
        limit = self.upload_limit if path in self.upload_paths else self.default_limit
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            response = problem_response(UPLOAD_TOO_LARGE, self._detail(path, limit))
            await response(scope, receive, send)
            return
        received = 0

        async def receive_with_limit() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLargeError(self._detail(path, limit))
            return message

        await self.app(scope, receive_with_limit, send)
