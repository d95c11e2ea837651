"""Per-client rate limiting of the tagging endpoints; off unless configured.

`TAGGER_RATE_LIMIT="60/minute"` (the `limits` notation; several joined with ";", e.g.
"10/second;300/hour") caps how often one client may call each of `POST /tag` and
`POST /tag/url`, counted in a moving window in this process's memory. A client over the limit
gets 429 problem details with `Retry-After`, before its body is read. The describing endpoints,
the web page, probes and metrics are never limited: a Kubernetes probe or a Prometheus scrape
must not be throttled into an outage.

A client is its address as uvicorn reports it. Behind a reverse proxy, let uvicorn take it from
`X-Forwarded-For` by setting `FORWARDED_ALLOW_IPS` to the proxy's address (uvicorn trusts only
127.0.0.1 by default), or every request counts against the proxy.

The counting is the `limits` library's. slowapi, the usual FastAPI wrapper around it, was tried
first: its middleware looks the endpoint up in `app.routes` (FastAPI's), which under FastAPI
0.165's nested routers holds no endpoints, so it silently limited nothing.
"""

from __future__ import annotations

import math
import time
from types import SimpleNamespace

from limits import parse_many
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from starlette.types import ASGIApp, Receive, Scope, Send

from app.service.problems import RATE_LIMITED, problem_response

LIMITED_PATHS = frozenset({"/tag", "/tag/url", "/similar", "/similar/url"})


class RateLimitMiddleware:
    """Answers 429 to a client that went over `rate_limit` on one of `paths`.

    Args:
        rate_limit: The limits, e.g. "60/minute" or "10/second;300/hour".
        paths: The paths that are limited, each with its own count per client.
    """

    def __init__(
        self, app: ASGIApp, *, rate_limit: str, paths: frozenset[str] = LIMITED_PATHS
    ) -> None:
        self.app = app
        self.rate_limit = rate_limit
        self.items = parse_many(rate_limit)
        self.paths = paths
        self.limiter = MovingWindowRateLimiter(MemoryStorage())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = str(scope.get("path", ""))
        if scope["type"] != "http" or path not in self.paths:
            await self.app(scope, receive, send)
            return
        client = str((scope.get("client") or ("unknown", 0))[0])
        # Test every limit before counting this request against any, so a refused request
        # does not use up the budget of the limits it passed.
        refused = [item for item in self.items if not self.limiter.test(item, client, path)]
        if not refused:
            for item in self.items:
                self.limiter.hit(item, client, path)
            await self.app(scope, receive, send)
            return
        reset_at = max(self.limiter.get_window_stats(item, client, path)[0] for item in refused)
        # The router never sees this request; name its endpoint for the request metrics.
        scope["route"] = SimpleNamespace(path=path)
        retry = max(1, math.ceil(reset_at - time.time()))
        response = problem_response(
            RATE_LIMITED,
            f"the limit for one client is {self.rate_limit} on {path}; retry after {retry} s",
            headers={"Retry-After": str(retry)},
        )
        await response(scope, receive, send)
