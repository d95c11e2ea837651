"""The HTTP API in process (httpx over ASGI, lifespan running): endpoints, options, problem
bodies, readiness, deadlines and a failing batch."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from torch import Tensor

from app.pipeline.defaults import InferFn
from app.service.problems import PROBLEM_JSON, TYPE_PREFIX
from model.runtime import cpu_has_native_bf16
from model.tags import MTAT_TAGS
from tests.app.audio import encode, silent_wav, wav_pcm16
from tests.app.conftest import GUITAR_THRESHOLD, PROVENANCE, running_app, settings_for
from tests.app.servers import accept_counter, metric_value

pytestmark = pytest.mark.anyio

WINDOW_SECONDS = 59049 / 16000


def assert_problem(response: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    body: dict[str, Any] = response.json()
    assert body["type"] == TYPE_PREFIX + slug
    assert body["status"] == status
    assert body["title"]
    assert body["detail"]
    assert "Traceback" not in response.text
    assert body["request_id"] == response.headers["x-request-id"]
    return body


def upload(data: bytes, name: str = "track.mp3") -> dict[str, Any]:
    return {"file": (name, data, "application/octet-stream")}


async def test_tag_with_options_and_the_describing_endpoints(checkpoint: Path) -> None:
    async with running_app(settings_for(checkpoint)) as (_, client):
        audio = encode("mp3", 8.0)
        response = await client.post("/tag", files=upload(audio))
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["model_id"].startswith("q2l-small@")
        assert body["format"] == "mp3"
        assert body["duration_seconds"] == pytest.approx(8.0, abs=0.05)
        assert body["windows"] == 3  # 8 s / 3.69 s, the last window aligned to the end
        assert body["segments"] is None
        assert len(body["tags"]) == 10
        scores = [tag["score"] for tag in body["tags"]]
        assert scores == sorted(scores, reverse=True)
        for tag in body["tags"]:
            assert 0.0 <= tag["score"] <= 1.0
            assert tag["passes_threshold"] == (tag["score"] >= tag["threshold"])
        timings = body["timings"]
        assert timings["fetch_ms"] is None
        assert timings["decode_ms"] > 0
        assert timings["compute_ms"] > 0
        assert timings["total_ms"] >= timings["compute_ms"]

        response = await client.post(
            "/tag", params={"top_k": 50, "segments": "true"}, files=upload(audio)
        )
        body = response.json()
        by_name = {tag["tag"]: tag for tag in body["tags"]}
        assert set(by_name) == {tag.name for tag in MTAT_TAGS}
        assert by_name["guitar"]["threshold"] == GUITAR_THRESHOLD
        assert by_name["rock"]["threshold"] == 0.5
        segments = body["segments"]
        assert [s["start"] for s in segments] == pytest.approx(
            [0.0, WINDOW_SECONDS, 8.0 - WINDOW_SECONDS]
        )
        assert segments[-1]["end"] == pytest.approx(8.0)
        # Track scores are the mean of the window scores.
        for name in ("guitar", "metal"):
            mean = sum(s["scores"][name] for s in segments) / len(segments)
            assert by_name[name]["score"] == pytest.approx(mean, abs=1e-5)

        everything = await client.post("/tag", params={"threshold": 0.0}, files=upload(audio))
        assert all(tag["passes_threshold"] for tag in everything.json()["tags"])
        nothing = await client.post("/tag", params={"threshold": 1.0}, files=upload(audio))
        assert not any(tag["passes_threshold"] for tag in nothing.json()["tags"])

        tags = (await client.get("/tags")).json()
        assert [t["name"] for t in tags["tags"]] == [tag.name for tag in MTAT_TAGS]
        assert tags["tags"][0] == {
            "index": 0,
            "name": "guitar",
            "category": "instrument",
            "synonym_group": "guitar",
            "threshold": GUITAR_THRESHOLD,
        }
        assert tags["tags"][26]["synonym_group"] == "female"  # "woman"

        info = (await client.get("/model")).json()
        assert info["preset"] == "q2l-small"
        assert info["architecture"] == "q2l"
        assert info["parameters"] > 4_000_000
        assert len(info["checkpoint_sha256"]) == 64
        assert info["model_id"] == f"q2l-small@{info['checkpoint_sha256'][:12]}"
        assert info["device"] == "cpu"
        precision = "bf16" if cpu_has_native_bf16() else "fp32"
        assert info["runtime"]["precision"] == precision
        assert info["dtype"] == ("bfloat16 (autocast)" if precision == "bf16" else "float32")
        assert info["runtime"]["channels_last"] is True
        assert info["runtime"]["compiled"] is False  # the tests' settings turn compilation off
        assert info["runtime"]["warmup_seconds"] > 0
        assert info["torch_threads"] == 1
        assert info["training_data"] == PROVENANCE["training_data"]
        assert info["metrics"] == PROVENANCE["metrics"]
        assert info["batching"]["batch_shapes"] == [1, 2, 4]

        assert (await client.get("/healthz")).json() == {"status": "ok"}
        ready = await client.get("/readyz")
        assert ready.json() == {"status": "ready", "model_id": info["model_id"]}

        metrics = await client.get("/metrics")
        assert metrics.headers["content-type"].startswith("text/plain")
        text = metrics.text
        assert metric_value(text, "tagger_requests_total", 'endpoint="/tag",outcome="ok"') == 4
        assert metric_value(text, "tagger_audio_seconds_total") == pytest.approx(32.0, abs=0.2)
        assert metric_value(text, "tagger_ready") == 1
        assert f'model_id="{info["model_id"]}"' in text
        for name in (
            "tagger_request_duration_seconds_count",
            "tagger_queue_wait_seconds_count",
            "tagger_batch_compute_seconds_count",
            "tagger_batch_size_windows_count",
            "tagger_decode_duration_seconds_count",
            "tagger_queued_windows",
            "tagger_inflight_requests",
        ):
            assert name in text


async def test_bad_requests_get_problem_details(checkpoint: Path) -> None:
    async with running_app(settings_for(checkpoint, max_audio_seconds=5)) as (_, client):
        audio = encode("wav", 1.0)
        cases = [
            (client.post("/tag", params={"top_k": 0}, files=upload(audio)), 400, "bad-request"),
            (client.post("/tag", params={"top_k": 51}, files=upload(audio)), 400, "bad-request"),
            (client.post("/tag", params={"threshold": 2}, files=upload(audio)), 400, "bad-request"),
            (
                client.post("/tag", params={"segments": "maybe"}, files=upload(audio)),
                400,
                "bad-request",
            ),
            (client.post("/tag"), 400, "bad-request"),
            (
                client.post("/tag/url", json={"url": "https://example.org/a.mp3", "colour": 1}),
                400,
                "bad-request",
            ),
            (
                client.post(
                    "/tag/url", content=b"{not json", headers={"content-type": "application/json"}
                ),
                400,
                "bad-request",
            ),
            (
                client.post("/tag", files=upload(b"plain text, not audio at all")),
                415,
                "unsupported-media-type",
            ),
            (client.post("/tag", files=upload(b"")), 422, "empty-audio"),
            (
                client.post("/tag", files=upload(b"ID3\x04\x00\x00\x00\x00\x00\x00" + bytes(5000))),
                422,
                "undecodable-audio",
            ),
            (client.post("/tag", files=upload(encode("wav", 6.0))), 413, "audio-too-long"),
            (client.get("/nowhere"), 404, "not-found"),
            (client.get("/tag"), 405, "method-not-allowed"),
        ]
        for request, status, slug in cases:
            assert_problem(await request, status, slug)

        response = await client.post("/tag", params={"top_k": 51}, files=upload(audio))
        assert "between 1 and 50" in response.json()["detail"]
        response = await client.post("/tag", params={"top_k": "many"}, files=upload(audio))
        body = assert_problem(response, 400, "bad-request")
        assert body["errors"][0]["location"] == "query parameter 'top_k'"
        response = await client.post("/tag", files=upload(encode("wav", 6.0)))
        assert "limit of 5 s" in response.json()["detail"]
        response = await client.post("/tag", content=audio, headers={"content-type": "audio/wav"})
        assert "multipart/form-data in a field named 'file'" in response.json()["detail"]


async def test_a_url_to_a_private_address_is_refused_without_connecting(checkpoint: Path) -> None:
    settings = settings_for(checkpoint, fetch_allowed_ports=[])  # default: public addresses only
    async with running_app(settings) as (_, client):
        with accept_counter() as listener:
            url = f"http://127.0.0.1:{listener.port}/song.mp3"
            response = await client.post("/tag/url", json={"url": url})
            await asyncio.sleep(0.3)
            body = assert_problem(response, 400, "forbidden-url")
            assert "non-public" in body["detail"]
            assert listener.accepted == 0
        metrics = (await client.get("/metrics")).text
        assert (
            metric_value(
                metrics, "tagger_requests_total", 'endpoint="/tag/url",outcome="forbidden_url"'
            )
            == 1
        )


async def test_not_ready_until_warm_and_requests_wait_meanwhile(checkpoint: Path) -> None:
    release = threading.Event()

    def held(infer: InferFn) -> InferFn:
        def call(windows: Tensor) -> Tensor:
            assert release.wait(30)
            return infer(windows)

        return call

    settings = settings_for(checkpoint, warmup=True)
    async with running_app(settings, ready=False, wrap_infer=held) as (_, client):
        assert (await client.get("/healthz")).status_code == 200
        response = await client.get("/readyz")
        body = assert_problem(response, 503, "not-ready")
        assert "warming up" in body["detail"]
        assert response.headers["retry-after"] == "1"
        # A request arriving during warm-up is queued, not refused.
        pending = asyncio.ensure_future(client.post("/tag", files=upload(wav_pcm16(2.0))))
        await asyncio.sleep(0.2)
        assert not pending.done()
        release.set()
        assert (await pending).status_code == 200
        assert (await client.get("/readyz")).status_code == 200


async def test_a_request_past_its_deadline_gets_504_and_its_windows_are_dropped(
    checkpoint: Path,
) -> None:
    release = threading.Event()

    def held(infer: InferFn) -> InferFn:
        def call(windows: Tensor) -> Tensor:
            assert release.wait(30)
            return infer(windows)

        return call

    settings = settings_for(
        checkpoint, warmup=False, request_deadline_s=0.5, deadline_s_per_audio_minute=0
    )
    async with running_app(settings, wrap_infer=held) as (_, client):
        # 4 windows: the first batch takes at least one, and the held model keeps it past the
        # deadline; the windows still queued then are dropped.
        response = await client.post("/tag", files=upload(wav_pcm16(12.0)))
        body = assert_problem(response, 504, "deadline-exceeded")
        assert "0.5 s" in body["detail"]
        # 6 more windows queue behind the held batch and are dropped at the deadline, never
        # computed.
        response = await client.post("/tag", files=upload(wav_pcm16(20.0)))
        assert_problem(response, 504, "deadline-exceeded")
        release.set()
        for _ in range(300):  # the held batch finishes once released
            metrics = (await client.get("/metrics")).text
            if metric_value(metrics, "tagger_batch_size_windows_count") >= 1:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)
        metrics = (await client.get("/metrics")).text
        # Only the held batch (the first request's first windows) was computed: whatever else
        # was queued at the deadlines was dropped (windows still decoding then never entered).
        assert metric_value(metrics, "tagger_batch_size_windows_count") == 1
        assert metric_value(metrics, "tagger_batch_size_windows_sum") <= 4
        assert metric_value(metrics, "tagger_dropped_windows_total", 'reason="deadline"') >= 1
        assert (
            metric_value(metrics, "tagger_requests_total", 'endpoint="/tag",outcome="deadline"')
            == 2
        )
        assert response.headers["retry-after"] == "1"


async def test_a_failing_batch_answers_500_and_the_service_keeps_serving(
    checkpoint: Path,
) -> None:
    # Nothing a client sends makes the real model raise, so a wrapper fails batches that hold
    # a window of exact silence (the first window of this test's poisoned upload).
    def poison_on_silence(infer: InferFn) -> InferFn:
        def call(windows: Tensor) -> Tensor:
            if bool((windows.abs().amax(dim=1) == 0).any()):
                raise RuntimeError("injected fault")
            return infer(windows)

        return call

    settings = settings_for(checkpoint, warmup=False)
    async with running_app(settings, wrap_infer=poison_on_silence) as (_, client):
        response = await client.post("/tag", files=upload(silent_wav(1.0)))
        body = assert_problem(response, 500, "inference-failed")
        assert "injected" not in body["detail"]  # internals stay in the log
        assert (await client.post("/tag", files=upload(wav_pcm16(1.0)))).status_code == 200
        metrics = (await client.get("/metrics")).text
        assert metric_value(metrics, "tagger_failed_batches_total") == 1
        assert (
            metric_value(
                metrics, "tagger_requests_total", 'endpoint="/tag",outcome="inference_error"'
            )
            == 1
        )


async def test_openapi_documents_examples_and_problem_responses(checkpoint: Path) -> None:
    async with running_app(settings_for(checkpoint, warmup=False), ready=False) as (_, client):
        schema = (await client.get("/openapi.json")).json()
    paths = schema["paths"]
    assert {"/tag", "/tag/url", "/tags", "/model", "/healthz", "/readyz", "/metrics"} <= set(paths)
    tag = paths["/tag"]["post"]
    assert {"400", "413", "415", "422", "500", "503", "504"} <= set(tag["responses"])
    assert PROBLEM_JSON in tag["responses"]["503"]["content"]
    assert "502" in paths["/tag/url"]["post"]["responses"]
    components = schema["components"]["schemas"]
    assert components["TagResponse"]["examples"][0]["tags"][0]["tag"] == "guitar"
    assert components["TagURLRequest"]["examples"]
    assert components["ModelInfo"]["examples"]
