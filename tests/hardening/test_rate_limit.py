"""Per-client rate limiting (TAGGER_RATE_LIMIT) on the real service."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from app.service.settings import Settings
from tests.app.servers import ServiceProcess
from tests.hardening.tools import problem_type, record

NOT_AUDIO = {"file": ("notes.mp3", b"not audio at all", "audio/mpeg")}


@pytest.fixture(scope="module")
def limited() -> Iterator[ServiceProcess]:
    process = ServiceProcess({"rate_limit": "3/minute"})
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()


def post(server: ServiceProcess, client: str | None = None) -> httpx.Response:
    # uvicorn takes the client address from X-Forwarded-For when the peer is 127.0.0.1 (its
    # default FORWARDED_ALLOW_IPS): that is how a proxy in front of the service names clients.
    headers = {"X-Forwarded-For": client} if client else {}
    return httpx.post(f"{server.url}/tag", files=NOT_AUDIO, headers=headers, timeout=30)


def test_a_client_over_its_limit_gets_429_with_retry_after(limited: ServiceProcess) -> None:
    answers = [post(limited, "198.51.100.7").status_code for _ in range(3)]
    assert answers == [415, 415, 415]  # counted, whatever the outcome
    refused = post(limited, "198.51.100.7")
    assert refused.status_code == 429
    assert problem_type(refused) == "rate-limited"
    assert "3/minute on /tag" in refused.json()["detail"]
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.json()["request_id"] == refused.headers["x-request-id"]

    # Other clients keep their own budget; the same client keeps its budget on /tag/url.
    assert post(limited, "198.51.100.8").status_code == 415
    url = httpx.post(
        f"{limited.url}/tag/url",
        json={"url": "file:///etc/passwd"},
        headers={"X-Forwarded-For": "198.51.100.7"},
        timeout=30,
    )
    assert url.status_code == 400
    # Probes, metrics and the describing endpoints are never limited.
    for path in ("/healthz", "/readyz", "/metrics", "/tags", "/model", "/openapi.json"):
        for _ in range(5):
            response = httpx.get(
                f"{limited.url}{path}", headers={"X-Forwarded-For": "198.51.100.7"}, timeout=30
            )
            assert response.status_code == 200, path
    assert limited.metric("tagger_requests_total", 'endpoint="/tag",outcome="rate_limited"') == 1
    record(
        "rate_limit",
        limit="3/minute",
        answers=[*answers, 429],
        retry_after_s=int(refused.headers["retry-after"]),
    )


def test_the_limit_is_off_by_default_and_validated() -> None:
    assert Settings().rate_limit is None
    assert Settings(rate_limit=" ").rate_limit is None
    assert Settings(rate_limit="10/second;300/hour").rate_limit == "10/second;300/hour"
    with pytest.raises(ValueError, match="rate_limit must look like"):
        Settings(rate_limit="often")
