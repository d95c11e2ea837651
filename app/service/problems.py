"""RFC 9457 problem details: every error the service returns is `application/problem+json`.

Each problem kind has a stable `type` (a `tag:` URI, as RFC 9457 suggests for identifiers that
are not meant to be dereferenced) so clients can branch on it, a fixed `title`, the status, and
a `detail` that tells the caller what to change. Exception handlers turn FastAPI's own errors
(validation, 404, 405, body too large) into the same shape; nothing ever sends a stack trace.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.pipeline.vocabulary import (
    AmbiguousTagError,
    UnknownTaxonomyError,
    VocabularyError,
)
from app.service.logs import current_request_id, record_outcome

PROBLEM_JSON = "application/problem+json"
TYPE_PREFIX = "tag:music-tagger,2026:problem:"

logger = logging.getLogger("tagger.problems")


@dataclass(frozen=True)
class ProblemKind:
    slug: str
    status: int
    title: str
    outcome: str  # the `outcome` label of tagger_requests_total

    @property
    def type(self) -> str:
        return TYPE_PREFIX + self.slug


BAD_REQUEST = ProblemKind("bad-request", 400, "Invalid request", "bad_input")
FORBIDDEN_URL = ProblemKind("forbidden-url", 400, "URL not allowed", "forbidden_url")
NOT_FOUND = ProblemKind("not-found", 404, "Not found", "not_found")
METHOD_NOT_ALLOWED = ProblemKind("method-not-allowed", 405, "Method not allowed", "not_found")
UPLOAD_TOO_LARGE = ProblemKind("upload-too-large", 413, "Request body too large", "too_large")
REMOTE_TOO_LARGE = ProblemKind(
    "remote-file-too-large", 413, "Remote file over the fetch limit", "too_large"
)
AUDIO_TOO_LONG = ProblemKind("audio-too-long", 413, "Audio too long", "too_large")
UNSUPPORTED_MEDIA = ProblemKind(
    "unsupported-media-type", 415, "Not a supported audio format", "bad_input"
)
UNDECODABLE = ProblemKind("undecodable-audio", 422, "Audio could not be decoded", "bad_input")
EMPTY_AUDIO = ProblemKind("empty-audio", 422, "No audio in the file", "bad_input")
# The decoder process crashed, hung or ran out of memory on the file: still the file's doing.
DECODER_FAILED = ProblemKind("decoder-failed", 422, "The decoder failed on this file", "bad_input")
BODY_TIMEOUT = ProblemKind("body-timeout", 408, "Request body too slow", "body_timeout")
RATE_LIMITED = ProblemKind("rate-limited", 429, "Too many requests", "rate_limited")
CLIENT_BUSY = ProblemKind(
    "client-busy", 429, "Too many requests in progress from this client", "client_limit"
)
INFERENCE_FAILED = ProblemKind("inference-failed", 500, "Inference failed", "inference_error")
INTERNAL = ProblemKind("internal-error", 500, "Internal server error", "internal")
FETCH_FAILED = ProblemKind("fetch-failed", 502, "Could not fetch the URL", "fetch_error")
QUEUE_FULL = ProblemKind("queue-full", 503, "Server busy", "queue_full")
NOT_READY = ProblemKind("not-ready", 503, "Service not ready", "not_ready")
UNHEALTHY = ProblemKind("unhealthy", 503, "Service unhealthy", "unhealthy")
FETCH_TIMEOUT = ProblemKind("fetch-timeout", 504, "Fetching the URL timed out", "fetch_error")
DEADLINE = ProblemKind("deadline-exceeded", 504, "Deadline exceeded", "deadline")

ALL_KINDS: tuple[ProblemKind, ...] = (
    BAD_REQUEST,
    FORBIDDEN_URL,
    NOT_FOUND,
    METHOD_NOT_ALLOWED,
    UPLOAD_TOO_LARGE,
    REMOTE_TOO_LARGE,
    AUDIO_TOO_LONG,
    UNSUPPORTED_MEDIA,
    UNDECODABLE,
    EMPTY_AUDIO,
    DECODER_FAILED,
    BODY_TIMEOUT,
    RATE_LIMITED,
    CLIENT_BUSY,
    INFERENCE_FAILED,
    INTERNAL,
    FETCH_FAILED,
    QUEUE_FULL,
    NOT_READY,
    UNHEALTHY,
    FETCH_TIMEOUT,
    DEADLINE,
)


class ProblemError(Exception):
    """Raise anywhere in request handling to answer with this problem.

    Args:
        kind: Which problem (status, type and title).
        detail: What went wrong with this request and what the caller should do about it.
        headers: Extra response headers (e.g. Retry-After).
        extensions: Extra members for the body (RFC 9457 §3.2).
    """

    def __init__(
        self,
        kind: ProblemKind,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        extensions: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        self.headers = headers or {}
        self.extensions = extensions or {}


def vocabulary_problem(error: VocabularyError) -> ProblemError:
    """A 400 for a taxonomy or tag the model lacks, with what it has as extension members
    (`taxonomies` for an unknown taxonomy, `candidates` for an ambiguous tag name)."""
    extensions: dict[str, Any] = {}
    if isinstance(error, AmbiguousTagError):
        extensions["candidates"] = list(error.candidates)
    if isinstance(error, UnknownTaxonomyError):
        extensions["taxonomies"] = list(error.taxonomies)
    return ProblemError(BAD_REQUEST, str(error), extensions=extensions)


class BodyTooLargeError(StarletteHTTPException):
    """The request body passed its size limit while streaming in.

    An HTTPException on purpose: FastAPI re-raises those from body parsing, where any other
    exception would be reported as an unparsable body (400).
    """

    def __init__(self, detail: str) -> None:
        super().__init__(status_code=413, detail=detail)


class ProblemHTTPError(StarletteHTTPException):
    """A problem raised while the request body streams in (from a wrapped `receive`).

    An HTTPException for the reason given for BodyTooLargeError.
    """

    def __init__(
        self, kind: ProblemKind, detail: str, *, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(status_code=kind.status, detail=detail, headers=headers)
        self.kind = kind


def problem_response(
    kind: ProblemKind,
    detail: str,
    *,
    headers: dict[str, str] | None = None,
    extensions: dict[str, Any] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": kind.type,
        "title": kind.title,
        "status": kind.status,
        "detail": detail,
        **(extensions or {}),
    }
    request_id = current_request_id()
    if request_id:
        body["request_id"] = request_id
    record_outcome(kind.outcome)
    return JSONResponse(body, status_code=kind.status, headers=headers, media_type=PROBLEM_JSON)


async def _handle_problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ProblemError)
    return problem_response(exc.kind, exc.detail, headers=exc.headers, extensions=exc.extensions)


def _describe_location(loc: tuple[Any, ...]) -> str:
    # ("query", "top_k") -> "query parameter 'top_k'"; ("body", "url") -> "body field 'url'"
    where = {"query": "query parameter", "body": "body field", "path": "path parameter"}
    parts = [str(p) for p in loc[1:]]
    name = ".".join(parts) if parts else "body"
    return f"{where.get(str(loc[0]), str(loc[0]))} '{name}'" if loc else "request"


async def _handle_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {
            "location": _describe_location(tuple(error.get("loc", ()))),
            "message": str(error.get("msg", "invalid")),
        }
        for error in exc.errors()
    ]
    detail = "; ".join(f"{e['location']}: {e['message']}" for e in errors) or "invalid request"
    if any(tuple(error.get("loc", ())) == ("body", "file") for error in exc.errors()):
        detail += "; send the audio as multipart/form-data in a field named 'file'"
    return problem_response(BAD_REQUEST, detail, extensions={"errors": errors})


async def _handle_http_exception(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    headers = dict(exc.headers or {})
    if exc.status_code == 404:
        return problem_response(NOT_FOUND, f"there is no endpoint at {request.url.path}")
    if exc.status_code == 405:
        return problem_response(
            METHOD_NOT_ALLOWED,
            f"{request.method} is not allowed on {request.url.path}",
            headers=headers,
        )
    if isinstance(exc, ProblemHTTPError):
        return problem_response(exc.kind, exc.detail, headers=headers)
    if isinstance(exc, BodyTooLargeError):
        return problem_response(UPLOAD_TOO_LARGE, exc.detail)
    if exc.status_code == 400:
        return problem_response(BAD_REQUEST, f"the request body could not be parsed: {exc.detail}")
    status = HTTPStatus(exc.status_code)
    body = {"type": "about:blank", "title": status.phrase, "status": status.value}
    body["detail"] = str(exc.detail)
    return JSONResponse(body, status_code=status.value, headers=headers, media_type=PROBLEM_JSON)


def install_problem_handlers(app: FastAPI) -> None:
    """Route every error FastAPI can raise through `problem_response`."""
    app.add_exception_handler(ProblemError, _handle_problem)
    app.add_exception_handler(RequestValidationError, _handle_validation)
    app.add_exception_handler(StarletteHTTPException, _handle_http_exception)
