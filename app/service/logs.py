"""Logs: one JSON object per line for machines, readable lines on a terminal; both carry the
id of the request being served.

`TAGGER_LOG_FORMAT=auto` (the default) writes text when stderr is a terminal (someone runs
`make serve` and reads along) and JSON otherwise (containers, systemd, log shippers);
`json` and `text` force one.

The request id lives in a context variable, set by the request middleware, so any log call made
while handling a request (in the event loop or in `asyncio.to_thread`, which copies the context)
is tagged with it without passing it around.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import re
import sys
import uuid
from dataclasses import dataclass
from typing import Any, TextIO


@dataclass
class RequestContext:
    """Per-request facts shared by the middleware, the handlers and the log formatter.

    A mutable object in the context variable (rather than one variable per fact) lets a handler
    record its outcome even when it runs in a copied context, e.g. a task spawned by a framework.
    """

    request_id: str
    outcome: str | None = None


_context: contextvars.ContextVar[RequestContext | None] = contextvars.ContextVar(
    "tagger_request_context", default=None
)

# An accepted X-Request-ID: short and free of characters that could forge log lines or headers.
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")

# LogRecord attributes that are not user-supplied `extra` fields.
_RESERVED = set(vars(logging.makeLogRecord({}))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",  # uvicorn's ANSI-coloured copy of the message
}


def current_context() -> RequestContext | None:
    return _context.get()


def current_request_id() -> str | None:
    context = _context.get()
    return context.request_id if context else None


def record_outcome(outcome: str) -> None:
    """Note how the current request ended, for the `tagger_requests_total` outcome label."""
    context = _context.get()
    if context is not None:
        context.outcome = outcome


def enter_context(context: RequestContext) -> contextvars.Token[RequestContext | None]:
    return _context.set(context)


def exit_context(token: contextvars.Token[RequestContext | None]) -> None:
    _context.reset(token)


def accept_request_id(header_value: str | None) -> str:
    """The client's X-Request-ID if it is a sane token, otherwise a fresh random id."""
    if header_value and _VALID_REQUEST_ID.fullmatch(header_value):
        return header_value
    return uuid.uuid4().hex


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line: time, level, logger, message, request id, extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = current_request_id()
        if request_id:
            entry["request_id"] = request_id
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    """Formats a record as one readable line: time, level, logger, message, then the request
    id and extras as key=value."""

    def format(self, record: logging.LogRecord) -> str:
        when = dt.datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        line = f"{when} {record.levelname.lower():<7} {record.name}: {record.getMessage()}"
        fields = {}
        request_id = current_request_id()
        if request_id:
            fields["request_id"] = request_id
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                fields[key] = value
        if fields:
            line += "  " + " ".join(f"{key}={value}" for key, value in fields.items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def wants_json(log_format: str, stream: TextIO) -> bool:
    """Whether logs go out as JSON: `json`, or `auto` on a stream that is not a terminal."""
    if log_format == "auto":
        return not stream.isatty()
    return log_format == "json"


def configure_logging(level: str = "info", log_format: str = "auto") -> None:
    """Send the service's and uvicorn's logs to stderr, as JSON lines or text (idempotent).

    Called by the command line only: an application embedded in someone else's process (tests,
    notebooks) leaves that process's logging alone.
    """
    handler = logging.StreamHandler(sys.stderr)
    as_json = wants_json(log_format, sys.stderr)
    handler.setFormatter(JsonFormatter() if as_json else TextFormatter())
    handler.set_name("tagger-json")
    # "model" carries the runtime's warm-up and compile-fallback messages.
    for name in ("tagger", "model", "uvicorn", "py.warnings"):  # uvicorn.error propagates up
        logger = logging.getLogger(name)
        logger.handlers = [h for h in logger.handlers if h.get_name() != "tagger-json"]
        logger.addHandler(handler)
        logger.setLevel(level.upper())
        logger.propagate = False
    # Our middleware writes one access line per request with the request id; uvicorn's own
    # access log would duplicate it without the id.
    logging.getLogger("uvicorn.access").disabled = True
