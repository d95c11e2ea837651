"""The web page's routes, in process: what `GET /` and `/static` serve (the page itself runs in
a real browser in test_browser.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from app.service.page import STATIC_DIR
from app.service.problems import PROBLEM_JSON
from tests.app.conftest import running_app, settings_for
from tests.app.servers import metric_value

pytestmark = pytest.mark.anyio


async def test_index_serves_the_page_with_its_assets(checkpoint: Path) -> None:
    async with running_app(settings_for(checkpoint, warmup=False), ready=False) as (_, client):
        page = await client.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        assert "default-src 'self'" in page.headers["content-security-policy"]
        html = page.text
        # Everything the page loads comes from the app: no CDN, no other origin.
        assets = re.findall(r'(?:src|href)="([^"#]+)"', html)
        assert "/static/app.js" in assets
        assert "/static/app.css" in assets
        for asset in assets:
            assert not asset.startswith(("http:", "https:", "//")), asset
        script = await client.get("/static/app.js")
        assert script.status_code == 200
        assert "javascript" in script.headers["content-type"]
        assert script.text == (STATIC_DIR / "app.js").read_text()
        style = await client.get("/static/app.css")
        assert style.status_code == 200
        assert style.headers["content-type"].startswith("text/css")
        # Every element the script looks up by id exists in the page.
        for element_id in re.findall(r'\$\("([\w-]+)"\)', script.text):
            assert f'id="{element_id}"' in html, element_id


async def test_page_is_not_an_api_error_and_not_in_the_schema(checkpoint: Path) -> None:
    async with running_app(settings_for(checkpoint, warmup=False), ready=False) as (_, client):
        for path in ("/", "/static/app.js", "/static/app.css"):
            assert (await client.get(path)).status_code == 200
        metrics = (await client.get("/metrics")).text
        schema = (await client.get("/openapi.json")).json()
    requests = "tagger_requests_total"
    assert metric_value(metrics, requests, 'endpoint="/",outcome="ok"') == 1
    assert metric_value(metrics, requests, 'endpoint="/static/{name}",outcome="ok"') == 2
    assert "/" not in schema["paths"]
    assert not any(path.startswith("/static") for path in schema["paths"])


async def test_missing_or_escaping_static_paths_are_problem_404s(checkpoint: Path) -> None:
    async with running_app(settings_for(checkpoint, warmup=False), ready=False) as (_, client):
        for path in ("/static/missing.js", "/static/../page.py", "/static/%2e%2e/page.py"):
            response = await client.get(path)
            assert response.status_code == 404, path
            assert response.headers["content-type"] == PROBLEM_JSON
            assert "import" not in response.text
