"""Admission control for the tagging endpoints: a bound on requests in progress.

The batcher's queue is bounded in windows, but a request only reaches it after its body has
been read and decoded. Without a bound before that, overload piled requests up in front of the
two decoder threads: under ten times the capacity, answers (even the 503s) took 40 s, a third of
the requests got none within a minute, and every waiting upload held its bytes in memory.

So at most `max_inflight_requests` tagging requests are in progress at once (reading, fetching,
decoding, queued or computing); one more is answered 503 with `Retry-After` at once, before its
body is read. Other endpoints (probes, metrics, descriptions) are never refused.
"""

from __future__ import annotations

from types import SimpleNamespace

from starlette.types import ASGIApp, Receive, Scope, Send

from app.service.problems import QUEUE_FULL, problem_response

ADMITTED_PATHS = frozenset({"/tag", "/tag/url"})


class AdmissionMiddleware:
    """Answers 503 to tagging requests beyond `limit` in progress.

    Args:
        limit: Tagging requests allowed in progress at once.
        retry_after_s: The `Retry-After` of the refusal.
    """

    def __init__(self, app: ASGIApp, *, limit: int, retry_after_s: int) -> None:
        self.app = app
        self.limit = limit
        self.retry_after_s = retry_after_s
        self.in_progress = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") not in ADMITTED_PATHS:
            await self.app(scope, receive, send)
            return
        if self.in_progress >= self.limit:
            # The router never sees this request; name its endpoint for the request metrics.
            scope["route"] = SimpleNamespace(path=scope["path"])
            response = problem_response(
                QUEUE_FULL,
                f"the server is busy ({self.in_progress} tagging requests in progress, its "
                f"limit); retry after {self.retry_after_s} s",
                headers={"Retry-After": str(self.retry_after_s)},
            )
            await response(scope, receive, send)
            return
        self.in_progress += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_progress -= 1
