"""The web page: `GET /` and its assets under `/static/`, none of them in the OpenAPI schema.

The page is plain HTML, CSS and JavaScript in `app/static/` (package data, no build step, no
CDN) that calls the same public API as any other client.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from app.service.problems import NOT_FOUND, ProblemError

STATIC_DIR = Path(__file__).resolve().parent / "static"

# A fixed set of files rather than a mounted folder: no path from a request ever reaches the file
# system, and the route template labels the request metrics (a mount is "unmatched" there).
ASSETS = {path.name: path for path in STATIC_DIR.iterdir() if path.suffix in {".css", ".js"}}

# Everything the page loads comes from this origin; media may also come from the URL a user
# pastes (the browser plays it directly) or from an object URL of a picked file.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; media-src 'self' blob: http: https:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)

router = APIRouter(include_in_schema=False)


@router.get("/")
async def index() -> FileResponse:
    return FileResponse(
        STATIC_DIR / "index.html",
        media_type="text/html; charset=utf-8",
        headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY},
    )


@router.get("/static/{name}")
async def asset(name: str) -> FileResponse:
    path = ASSETS.get(name)
    if path is None:
        raise ProblemError(NOT_FOUND, f"the page has no file named {name!r}")
    # Revalidated on every load (the ETag makes that a 304): a new release shows at once.
    return FileResponse(path, headers={"Cache-Control": "no-cache"})
