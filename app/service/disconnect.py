"""Stop working for clients that have gone away.

Once a request's body has been read, the next ASGI message the server delivers for it is
`http.disconnect`, sent when the client closes the connection (uvicorn), or after the response
(in-process transports). Racing the work against that message lets a handler cancel the work of
an abandoned request: its queued windows are then dropped before they reach the model.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any, TypeVar

from starlette.requests import Request

T = TypeVar("T")


class ClientDisconnectedError(Exception):
    """The client closed the connection before the response was ready."""


async def _wait_for_disconnect(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def cancel_on_disconnect(request: Request, work: Coroutine[Any, Any, T]) -> T:
    """Run `work`; if the client disconnects first, cancel it and raise ClientDisconnectedError.

    Call only after the request body has been consumed, or the watcher would swallow it.
    """
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_wait_for_disconnect(request))
    try:
        done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:  # the server is cancelling us: take the work down too
        task.cancel()
        watcher.cancel()
        raise
    if task in done or watcher.exception() is not None:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        return await task
    task.cancel()
    # Whatever the work raises while being cancelled, nobody is left to tell.
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
    raise ClientDisconnectedError
