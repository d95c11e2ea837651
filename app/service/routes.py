"""HTTP routes: parse the request, call `TaggingService`, return its pydantic models."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, File, Query, Request, UploadFile
from fastapi.responses import Response

from app.service.disconnect import cancel_on_disconnect
from app.service.explaining import ExplainOptions
from app.service.metrics import CONTENT_TYPE, Metrics
from app.service.problems import NOT_READY, PROBLEM_JSON, UNHEALTHY, ProblemError
from app.service.schemas import (
    SYNONYMS_PARAMETER,
    TAXONOMY_PARAMETER,
    Health,
    ModelInfo,
    ProblemBody,
    Readiness,
    TagResponse,
    TagsResponse,
    TagURLRequest,
)
from app.service.tagging import TaggingService, TagOptions

router = APIRouter()

# Body limit of every endpoint but the upload: a JSON body naming a URL needs a few kilobytes.
URL_REQUEST_MAX_BYTES = 16 * 1024

_PROBLEM_DESCRIPTIONS = {
    400: "Invalid parameters or a URL that may not be fetched.",
    408: "The request body stalled or arrived too slowly; the connection is closed.",
    413: "Upload, remote file or audio duration over the limit.",
    415: "Not audio in a supported format.",
    422: "Audio that cannot be decoded, or no audio at all.",
    429: "This client has its share of requests in progress, or its rate limit (only with "
    "TAGGER_RATE_LIMIT) is used up; see Retry-After.",
    500: "The model failed on a batch holding this request.",
    502: "The URL could not be fetched.",
    503: "Queue full or not ready; see Retry-After.",
    504: "Deadline passed, or the URL was too slow.",
}


def _problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {
        status: {
            "model": ProblemBody,
            "description": _PROBLEM_DESCRIPTIONS[status],
            "content": {PROBLEM_JSON: {}},
        }
        for status in statuses
    }


async def get_service(request: Request) -> AsyncIterator[TaggingService]:
    """The service a request uses from start to end, even if a tag set reload swaps in another
    meanwhile (app/service/reload.py): it counts as in flight on this one until it is done."""
    service: TaggingService | None = getattr(request.app.state, "service", None)
    if service is None:
        raise ProblemError(NOT_READY, "the model is not loaded yet", headers={"Retry-After": "1"})
    service.in_flight += 1
    try:
        yield service
    finally:
        service.in_flight -= 1


def get_metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


Service = Annotated[TaggingService, Depends(get_service)]


@router.post(
    "/tag",
    summary="Tag an uploaded audio file",
    response_model=TagResponse,
    responses=_problems(400, 408, 413, 415, 422, 429, 500, 503, 504),
)
async def tag_upload(
    request: Request,
    service: Service,
    file: Annotated[
        UploadFile,
        File(description="mp3, wav, flac, ogg/vorbis, opus, m4a/aac; recognised by content."),
    ],
    top_k: Annotated[int, Query(ge=1, description="How many tags to return, best first.")] = 10,
    threshold: Annotated[
        float | None,
        Query(ge=0.0, le=1.0, description="One threshold for all tags (default: per tag)."),
    ] = None,
    segments: Annotated[bool, Query(description="Also return per-window scores.")] = False,
    explain: Annotated[
        bool, Query(description="Also return evidence maps (docs/explanations.md).")
    ] = False,
    explain_tags: Annotated[
        list[str] | None, Query(description="Tags to explain (default: the top tags).")
    ] = None,
    explain_method: Annotated[
        Literal["gradient", "attention"] | None, Query(description="Default: gradient.")
    ] = None,
    embedding: Annotated[
        bool, Query(description="Also return the track's embedding (and each window's).")
    ] = False,
    taxonomy: Annotated[str | None, Query(description=TAXONOMY_PARAMETER)] = None,
    synonyms: Annotated[Literal["one", "all"] | None, Query(description=SYNONYMS_PARAMETER)] = None,
) -> TagResponse:
    started = time.monotonic()
    data = await file.read()
    options = TagOptions(
        top_k=top_k,
        threshold=threshold,
        segments=segments,
        embedding=embedding,
        taxonomy=taxonomy,
        synonyms=synonyms,
    )
    if explain or explain_tags:
        explaining = ExplainOptions(tuple(explain_tags or ()), explain_method, taxonomy)
        work = service.tag_and_explain(data, options, explaining, started=started)
        return await cancel_on_disconnect(request, work)
    return await cancel_on_disconnect(request, service.tag_audio(data, options, started=started))


@router.post(
    "/tag/url",
    summary="Tag the audio file at a URL",
    response_model=TagResponse,
    responses=_problems(400, 408, 413, 415, 422, 429, 500, 502, 503, 504),
)
async def tag_url(request: Request, service: Service, body: TagURLRequest) -> TagResponse:
    started = time.monotonic()
    options = TagOptions(
        top_k=body.top_k,
        threshold=body.threshold,
        segments=body.segments,
        embedding=body.embedding,
        taxonomy=body.taxonomy,
        synonyms=body.synonyms,
    )
    if body.explain or body.explain_tags:
        explaining = ExplainOptions(tuple(body.explain_tags), body.explain_method, body.taxonomy)
        work = service.tag_url_and_explain(body.url, options, explaining, started=started)
        return await cancel_on_disconnect(request, work)
    return await cancel_on_disconnect(request, service.tag_url(body.url, options, started=started))


@router.get(
    "/tags",
    summary="The tag vocabulary, in model order and grouped by taxonomy and category",
    response_model=TagsResponse,
    responses=_problems(400),
)
async def tags(
    service: Service,
    taxonomy: Annotated[str | None, Query(description=TAXONOMY_PARAMETER)] = None,
) -> TagsResponse:
    return service.tags_info(taxonomy)


@router.get("/model", summary="The loaded model", response_model=ModelInfo)
async def model_info(service: Service) -> ModelInfo:
    return service.model_info()


@router.get(
    "/healthz",
    summary="Liveness: the process answers and its batcher is not stuck",
    response_model=Health,
    responses=_problems(503),
)
async def healthz(request: Request) -> Health:
    service = getattr(request.app.state, "service", None)
    stuck = None if service is None else service.stuck
    if stuck is not None:
        raise ProblemError(UNHEALTHY, stuck)
    return Health(status="ok")


@router.get(
    "/readyz",
    summary="Readiness: model loaded and warmed up",
    response_model=Readiness,
    responses=_problems(503),
)
async def readyz(request: Request, service: Service) -> Readiness:
    draining = getattr(request.app.state, "draining", False)
    if draining or not service.ready:
        if draining or service.stopping:
            detail = "shutting down"
        elif service.warmup_error:
            detail = f"warm-up failed ({service.warmup_error}); see the server log"
        else:
            detail = "warming up the model"
        raise ProblemError(NOT_READY, detail, headers={"Retry-After": "1"})
    return Readiness(status="ready", model_id=service.model_id)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE: {}}, "description": "Text exposition format."}},
)
async def metrics(metrics: Annotated[Metrics, Depends(get_metrics)]) -> Response:
    return Response(metrics.render(), media_type=CONTENT_TYPE)
