"""`explain` on POST /tag and /tag/url: the response form, its bounds, bad input, OpenAPI, and
the real uvicorn service (the session's `server`)."""

from __future__ import annotations

import base64
from pathlib import Path

import httpx
import pytest

from model.checkpoint import save_checkpoint
from model.zoo import build_model
from tests.app.audio import encode
from tests.app.conftest import running_app, settings_for
from tests.app.servers import FileServer, Route, ServiceProcess
from tests.app.service.test_api import assert_problem, upload

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def rescnn_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("rescnn") / "rescnn.safetensors"
    return save_checkpoint(path, build_model("rescnn").eval(), preset="rescnn")


async def test_explain_returns_bounded_maps_on_seconds_and_hz(checkpoint: Path) -> None:
    settings = settings_for(checkpoint, explain_max_columns=10)
    async with running_app(settings) as (_, client):
        plain = await client.post("/tag", files=upload(encode("mp3", 8.0)))
        assert plain.json()["explanations"] is None  # nothing unless asked
        response = await client.post(
            "/tag",
            params={"top_k": 3, "explain": "true", "explain_method": "attention"},
            files=upload(encode("mp3", 8.0)),
        )
        assert response.status_code == 200, response.text
        body = response.json()
        # The tags come from the normal path: the same as without explain.
        assert body["tags"] == plain.json()["tags"][:3]
        explained = body["explanations"]
        assert explained["method"] == "attention"
        assert [m["tag"] for m in explained["maps"]] == [t["tag"] for t in body["tags"]]
        # 8 s are 18 steps of 0.46 s; at most 10 columns: steps are averaged in pairs.
        assert explained["columns"] == 9
        assert explained["step_seconds"] == pytest.approx(0.9226, abs=1e-3)
        assert explained["band_edges_hz"][0] == 0.0
        assert explained["band_edges_hz"][-1] == 8000.0
        for evidence in explained["maps"]:
            assert len(evidence["values"]) == 4  # the token grid's frequency rows
            assert all(len(row) == 9 for row in evidence["values"])
            assert max(max(row) for row in evidence["values"]) == 1.0
            assert min(min(row) for row in evidence["values"]) >= 0.0
        spec = explained["spectrogram"]
        assert len(base64.b64decode(spec["data"])) == spec["rows"] * spec["columns"]
        assert spec["columns"] == 4 * 9
        assert len(spec["band_edges_hz"]) == spec["rows"] + 1
        assert spec["step_seconds"] * spec["columns"] == pytest.approx(8.0, abs=0.05)


async def test_bad_explain_requests_are_4xx(checkpoint: Path, rescnn_checkpoint: Path) -> None:
    async with running_app(settings_for(checkpoint, explain_max_tags=2)) as (_, client):
        audio = upload(encode("wav", 4.0), "a.wav")
        response = await client.post("/tag", params={"explain_tags": "kazoo"}, files=audio)
        body = assert_problem(response, 400, "bad-request")
        assert "'kazoo'" in body["detail"]
        assert "valid tags: guitar" in body["detail"]
        assert "piano" in body["valid_tags"]
        many = {"explain_tags": ["piano", "flute", "cello"]}
        response = await client.post("/tag", params=many, files=audio)
        assert "at most 2" in assert_problem(response, 400, "bad-request")["detail"]
        response = await client.post("/tag", params={"explain_method": "shap"}, files=audio)
        assert "explain_method" in assert_problem(response, 400, "bad-request")["detail"]
    async with running_app(settings_for(rescnn_checkpoint)) as (_, client):
        audio = upload(encode("wav", 4.0), "a.wav")
        asked = {"explain": "true", "explain_method": "attention"}
        response = await client.post("/tag", params=asked, files=audio)
        body = assert_problem(response, 400, "bad-request")
        assert "no label queries" in body["detail"]
        assert body["methods"] == ["gradient"]
        # The gradient map works for a model without label queries.
        response = await client.post("/tag", params={"explain_tags": "piano"}, files=audio)
        assert response.status_code == 200, response.text
        assert response.json()["explanations"]["method"] == "gradient"
        assert len(response.json()["explanations"]["maps"][0]["values"]) == 16


async def test_the_openapi_schema_describes_explanations(checkpoint: Path) -> None:
    async with running_app(settings_for(checkpoint), ready=False) as (_, client):
        schema = (await client.get("/openapi.json")).json()
    components = schema["components"]["schemas"]
    assert {"Explanations", "EvidenceMapBody", "SpectrogramBody"} <= set(components)
    assert "explanations" in components["TagResponse"]["properties"]
    assert "explain_tags" in components["TagURLRequest"]["properties"]
    params = {p["name"] for p in schema["paths"]["/tag"]["post"]["parameters"]}
    assert {"explain", "explain_tags", "explain_method"} <= params


def test_the_real_service_explains_uploads_and_urls(
    server: ServiceProcess, file_server: FileServer
) -> None:
    audio = encode("mp3", 6.0)
    response = httpx.post(
        f"{server.url}/tag",
        params={"explain_tags": ["piano", "flute"]},
        files={"file": ("t.mp3", audio, "audio/mpeg")},
        timeout=120,
    )
    assert response.status_code == 200, response.text
    explained = response.json()["explanations"]
    assert explained["method"] == "gradient"
    assert [m["tag"] for m in explained["maps"]] == ["piano", "flute"]
    assert explained["columns"] == 14  # 6 s in 0.46 s steps
    file_server.routes["/t.mp3"] = Route(audio)
    response = httpx.post(
        f"{server.url}/tag/url",
        json={"url": f"{file_server.base}/t.mp3", "top_k": 2, "explain": True},
        timeout=120,
    )
    assert response.status_code == 200, response.text
    assert len(response.json()["explanations"]["maps"]) == 2
