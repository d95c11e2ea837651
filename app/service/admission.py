"""Admission control for the tagging endpoints: a bound on the work in progress, and a share
of it per client.

The batcher's queue is bounded in windows, but a request only reaches it after its body has
been read and decoded. Without a bound before that, overload piled requests up in front of the
two decoder threads: under ten times the capacity, answers (even the 503s) took 40 s, a third of
the requests got none within a minute, and every waiting upload held its bytes in memory.

So at most `limit` tagging requests are at work at once (fetching, decoding, queued or
computing). A request holds its slot from the moment its body is complete: a client still
sending its body costs the server no work, and counting it let 32 stalled uploads lock every
other client out (their bodies are bounded in time by `app.service.slowbody`). When every slot
is taken, a new request is answered 503 with `Retry-After` at once, before its body is read; a
request whose body completes while they are all taken gets the same answer then.

One client (its address, as for the rate limit) may have at most `client_limit` tagging
requests in progress in any stage, body included; more get 429 with `Retry-After` at once.
Other endpoints (probes, metrics, descriptions) are never refused.
"""

from __future__ import annotations

from collections import Counter
from types import SimpleNamespace

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.service.problems import CLIENT_BUSY, QUEUE_FULL, ProblemHTTPError, problem_response

ADMITTED_PATHS = frozenset({"/tag", "/tag/url", "/similar", "/similar/url"})


def client_key(scope: Scope) -> str:
    """The client a request counts against: its address as uvicorn reports it."""
    return str((scope.get("client") or ("unknown", 0))[0])


def client_limit(limit: int, share: float) -> int | None:
    """How many of `limit` slots one client may hold: its `share`, at least one; None (no
    cap of its own) for a share of 1, since the cap counts bodies still arriving too."""
    return None if share >= 1.0 else max(1, int(limit * share))


class AdmissionMiddleware:
    """Answers 503 to tagging requests beyond `limit` at work, 429 beyond a client's share.

    Args:
        limit: Tagging requests allowed at work at once.
        client_limit: Tagging requests one client may have in progress at once (None: any).
        retry_after_s: The `Retry-After` of the refusals.
    """

    def __init__(
        self, app: ASGIApp, *, limit: int, client_limit: int | None, retry_after_s: int
    ) -> None:
        self.app = app
        self.limit = limit
        self.client_limit = client_limit
        self.retry_after_s = retry_after_s
        self.in_progress = 0
        self.by_client: Counter[str] = Counter()

    def _busy_detail(self) -> str:
        return (
            f"the server is busy ({self.in_progress} tagging requests in progress, its "
            f"limit); retry after {self.retry_after_s} s"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") not in ADMITTED_PATHS:
            await self.app(scope, receive, send)
            return
        retry = {"Retry-After": str(self.retry_after_s)}
        client = client_key(scope)
        over_share = self.client_limit is not None and self.by_client[client] >= self.client_limit
        if self.in_progress >= self.limit or over_share:
            if self.in_progress >= self.limit:
                kind, detail = QUEUE_FULL, self._busy_detail()
            else:
                kind, detail = (
                    CLIENT_BUSY,
                    f"this client already has {self.by_client[client]} tagging requests in "
                    f"progress, its limit; retry after {self.retry_after_s} s",
                )
            # The router never sees this request; name its endpoint for the request metrics.
            scope["route"] = SimpleNamespace(path=scope["path"])
            await problem_response(kind, detail, headers=retry)(scope, receive, send)
            return
        working = False
        body_done = False

        async def receive_and_admit() -> Message:
            nonlocal working, body_done
            message = await receive()
            if body_done:
                return message
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
                if message["type"] == "http.request":
                    if self.in_progress >= self.limit:
                        raise ProblemHTTPError(QUEUE_FULL, self._busy_detail(), headers=retry)
                    self.in_progress += 1
                    working = True
            return message

        self.by_client[client] += 1
        try:
            await self.app(scope, receive_and_admit, send)
        finally:
            self.by_client[client] -= 1
            if not self.by_client[client]:
                del self.by_client[client]
            if working:
                self.in_progress -= 1
