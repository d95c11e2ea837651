"""HTTP routes of similarity search: `POST /similar`, `POST /similar/url`, `GET /catalog/...`.

Present in every service; without `TAGGER_CATALOG` they answer 404 `no-catalog`.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Path, Query, Request, UploadFile
from fastapi.responses import FileResponse

from app.catalog.search import Filters
from app.service.disconnect import cancel_on_disconnect
from app.service.problems import PROBLEM_JSON, ProblemError
from app.service.routes import _problems
from app.service.schemas import ProblemBody
from app.service.similar import NO_CATALOG, SimilarService
from app.service.similar_schemas import (
    CatalogInfo,
    CatalogTrack,
    SimilarResponse,
    SimilarURLRequest,
    VectorSearchRequest,
)

router = APIRouter()


def get_similar(request: Request) -> SimilarService:
    similar: SimilarService | None = getattr(request.app.state, "similar", None)
    if similar is None:
        raise ProblemError(
            NO_CATALOG,
            "this service has no catalogue: start it with TAGGER_CATALOG=catalog.db (built by "
            "`tagger index build`)",
        )
    return similar


Similar = Annotated[SimilarService, Depends(get_similar)]
Top = Annotated[int, Query(ge=1, le=100, description="How many tracks to return.")]
Tag = Annotated[list[str], Query(description="Tags every result must have (repeatable).")]
MinScore = Annotated[
    float | None,
    Query(ge=0.0, le=1.0, description="Score a tag needs (default: the tag's threshold)."),
]
Taxonomy = Annotated[
    list[str],
    Query(description="Categories in which results share the query's best tag (repeatable)."),
]
TrackId = Annotated[int, Path(ge=1, description="The track's id in the catalogue.")]


def _problem(description: str) -> dict[str, Any]:
    return {"model": ProblemBody, "description": description, "content": {PROBLEM_JSON: {}}}


_CATALOG: dict[int | str, dict[str, Any]] = {
    400: _problem("Invalid parameters, or a filter naming an unknown tag or category."),
    404: _problem("No catalogue (TAGGER_CATALOG), or an unknown track id."),
}
_SEARCH: dict[int | str, dict[str, Any]] = {
    **_CATALOG,
    409: _problem("The catalogue was built by another model."),
}
_AUDIO: dict[int | str, dict[str, Any]] = {
    **_problems(408, 413, 415, 422, 429, 500, 503, 504),
    **_SEARCH,
}


@router.post(
    "/similar",
    summary="Catalogued tracks that sound like an uploaded file",
    response_model=SimilarResponse,
    responses=_AUDIO,
)
async def similar_upload(
    request: Request,
    similar: Similar,
    file: Annotated[UploadFile, File(description="An audio file, as for POST /tag.")],
    top: Top = 10,
    tag: Tag = [],  # noqa: B006 - FastAPI copies defaults
    min_score: MinScore = None,
    taxonomy: Taxonomy = [],  # noqa: B006
) -> SimilarResponse:
    started = time.monotonic()
    data = await file.read()
    filters = Filters(tuple(tag), min_score, tuple(taxonomy))
    search = similar.similar_to_audio(data, None, top, filters, started=started)
    return await cancel_on_disconnect(request, search)


@router.post(
    "/similar/url",
    summary="Catalogued tracks that sound like the audio file at a URL",
    response_model=SimilarResponse,
    responses={**_AUDIO, **_problems(502)},
)
async def similar_url(
    request: Request, similar: Similar, body: SimilarURLRequest
) -> SimilarResponse:
    started = time.monotonic()
    filters = Filters(tuple(body.tag), body.min_score, tuple(body.taxonomy))
    search = similar.similar_to_audio(None, body.url, body.top, filters, started=started)
    return await cancel_on_disconnect(request, search)


@router.post(
    "/catalog/search",
    summary="Catalogued tracks nearest to an embedding",
    response_model=SimilarResponse,
    responses=_SEARCH,
)
async def catalog_search(similar: Similar, body: VectorSearchRequest) -> SimilarResponse:
    filters = Filters(tuple(body.tag), body.min_score, tuple(body.taxonomy))
    return await similar.similar_to_vector(body.embedding, body.scores, body.top, filters)


@router.get(
    "/catalog", summary="What the catalogue holds", response_model=CatalogInfo, responses=_CATALOG
)
async def catalog_info(similar: Similar) -> CatalogInfo:
    return similar.info()


@router.get(
    "/catalog/tracks/{track_id}",
    summary="One catalogued track",
    response_model=CatalogTrack,
    responses=_CATALOG,
)
async def catalog_track(similar: Similar, track_id: TrackId) -> CatalogTrack:
    return similar.track(track_id)


@router.get(
    "/catalog/tracks/{track_id}/similar",
    summary="Catalogued tracks that sound like a catalogued track",
    response_model=SimilarResponse,
    responses=_SEARCH,
)
async def catalog_similar(
    similar: Similar,
    track_id: TrackId,
    top: Top = 10,
    tag: Tag = [],  # noqa: B006
    min_score: MinScore = None,
    taxonomy: Taxonomy = [],  # noqa: B006
) -> SimilarResponse:
    filters = Filters(tuple(tag), min_score, tuple(taxonomy))
    return await similar.similar_to_track(track_id, top, filters)


@router.get(
    "/catalog/tracks/{track_id}/audio",
    summary="The catalogued file, to play it",
    response_class=FileResponse,
    responses={
        **_CATALOG,
        200: {"content": {"audio/*": {}}, "description": "The file as it is on disk."},
    },
)
async def catalog_audio(similar: Similar, track_id: TrackId) -> FileResponse:
    return FileResponse(similar.audio_path(track_id))
