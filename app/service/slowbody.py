"""Cut request bodies that stop arriving or trickle in: answer 408 and close the connection.

Uvicorn has no timeout on a request body: a client that sends its headers and a few bytes and
then stalls holds its connection, its memory and (before this middleware) an admission slot
for as long as it likes. Forty such connections from one laptop once locked every other client
out with 503s.

So every wait for the next body chunk is bounded, in two ways:

- idle: no bytes for `idle_timeout_s` (30 s by default);
- rate: after a grace period, the average rate since the body began is below
  `min_rate_bytes_s`. The wait for the next chunk ends at the moment the average would drop
  below the minimum, so a client that sends one byte just before each idle timeout is cut too.

A cut raises `ProblemHTTPError(BODY_TIMEOUT)` from the wrapped `receive`: the route's body
parsing re-raises HTTP exceptions, so the handler answers 408 problem details, with
`Connection: close`, which makes uvicorn close the socket once the answer is written (the rest
of the body is never read, so the connection could not be reused anyway). Before the close, the
connection lingers for up to `LINGER_S`, discarding what still arrives (as nginx's lingering
close does), so that the client can read its 408 before the close resets the connection. The wait is
cancelled by `asyncio.timeout`, which leaves nothing behind: uvicorn's `receive` only waits on
an event. Once the body is complete, `receive` is passed through untouched (the disconnect
watcher of the tagging routes waits on it for as long as the work takes).
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.service.metrics import Metrics
from app.service.problems import BODY_TIMEOUT, ProblemHTTPError

# How long a cut connection stays open, discarding what the client still sends, after the 408.
LINGER_S = 2.0


class SlowBodyMiddleware:
    """Answers 408 to a request whose body stalls or arrives below a minimum rate.

    Args:
        idle_timeout_s: Longest wait for the next chunk of a body.
        min_rate_bytes_s: Lowest average rate a body may arrive at after the grace period;
            0 turns the rate check off.
        grace_s: How long a body may arrive at any rate before the rate is checked.
        metrics: Counts the cuts by reason (`idle`, `slow`).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        idle_timeout_s: float,
        min_rate_bytes_s: float,
        grace_s: float,
        metrics: Metrics,
    ) -> None:
        self.app = app
        self.idle_timeout_s = idle_timeout_s
        self.min_rate = min_rate_bytes_s
        self.grace_s = grace_s
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        received = 0
        complete = False
        cut = False

        def rate_deadline() -> float:
            # When the average since `started` falls below the minimum if no byte comes.
            if not self.min_rate:
                return float("inf")
            return started + max(self.grace_s, received / self.min_rate)

        async def receive_in_time() -> Message:
            nonlocal received, complete, cut
            if complete:
                return await receive()
            now = time.monotonic()
            by_rate = rate_deadline()
            wait = min(self.idle_timeout_s, by_rate - now)
            try:
                async with asyncio.timeout(max(0.0, wait)):
                    message = await receive()
            except TimeoutError:
                cut = True
                slow = by_rate - now < self.idle_timeout_s
                raise self._cut(slow, received, time.monotonic() - started) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                complete = not message.get("more_body", False)
            else:
                complete = True
            return message

        async def send_then_linger(message: Message) -> None:
            if not (cut and message["type"] == "http.response.body"):
                await send(message)
                return
            if message.get("more_body", False):
                await send(message)
                return
            # Closing a socket with unread bytes in it makes the kernel send a reset, which can
            # destroy the 408 on its way; a client still sending gets a moment to read it first.
            await send({**message, "more_body": True})
            await self._drain(receive)
            await send({"type": "http.response.body", "body": b"", "more_body": False})

        await self.app(scope, receive_in_time, send_then_linger)

    async def _drain(self, receive: Receive) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(LINGER_S):
                while True:
                    message = await receive()
                    if message["type"] != "http.request" or not message.get("more_body", False):
                        return

    def _cut(self, slow: bool, received: int, elapsed: float) -> ProblemHTTPError:
        self.metrics.cut_connections.labels(reason="slow" if slow else "idle").inc()
        if slow:
            detail = (
                f"the request body arrived too slowly ({received} bytes in {elapsed:.1f} s; "
                f"the minimum is {self.min_rate:g} bytes/s after {self.grace_s:g} s)"
            )
        else:
            detail = (
                f"the request body stalled: no bytes for {self.idle_timeout_s:g} s "
                f"after {received} bytes"
            )
        return ProblemHTTPError(
            BODY_TIMEOUT, detail + "; the connection is closed", headers={"Connection": "close"}
        )
