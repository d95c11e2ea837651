"""`POST /similar`, `GET /catalog/...` and `embedding` on `POST /tag`, against the real service
(uvicorn in a subprocess) with a real catalogue of real music, and `tagger index` writing to
that catalogue while the service reads it."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from model.checkpoint import load_checkpoint
from tests.app.catalog.music import RATE, ROOT, fetch_music
from tests.app.servers import FileServer, Route, ServiceProcess

SETTINGS: dict[str, Any] = {
    "max_batch_windows": 8,
    "max_wait_ms": 5,
    "torch_threads": 1,
    "allow_private_addresses": True,
    "fetch_allowed_ports": [],
}


@pytest.fixture(scope="module")
def served_catalog(catalog: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the catalogue (the last test adds tracks to it)."""
    copy = tmp_path_factory.mktemp("served") / "catalog.db"
    shutil.copyfile(catalog, copy)
    for suffix in (".faiss", ".faiss.json"):
        shutil.copyfile(f"{catalog}{suffix}", f"{copy}{suffix}")
    return copy


@pytest.fixture(scope="module")
def service(served_catalog: Path) -> Iterator[ServiceProcess]:
    process = ServiceProcess({"catalog": str(served_catalog), **SETTINGS})
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()


def ids_by_name(service: ServiceProcess) -> dict[str, int]:
    found = {}
    for track_id in range(1, 7):
        track = httpx.get(f"{service.url}/catalog/tracks/{track_id}").json()
        found[Path(track["file"]).stem] = track_id
    return found


def test_an_upload_finds_its_catalogued_copy_then_the_other_half(
    service: ServiceProcess, excerpts: dict[str, Path]
) -> None:
    data = excerpts["orchestral-a"].read_bytes()
    response = httpx.post(
        f"{service.url}/similar", files={"file": ("q.flac", data)}, params={"top": 3}, timeout=60
    )
    assert response.status_code == 200, response.text
    body = response.json()
    names = [Path(r["file"]).stem for r in body["results"]]
    assert names[:2] == ["orchestral-a", "orchestral-b"]
    assert body["results"][0]["similarity"] == pytest.approx(1.0, abs=1e-3)
    assert len(names) == 3


def test_a_url_is_fetched_and_searched(
    service: ServiceProcess, excerpts: dict[str, Path], file_server: FileServer
) -> None:
    file_server.routes["/q.flac"] = Route(excerpts["metal-b"].read_bytes())
    response = httpx.post(
        f"{service.url}/similar/url", json={"url": f"{file_server.base}/q.flac", "top": 2},
        timeout=60,
    )  # fmt: skip
    assert response.status_code == 200, response.text
    assert [Path(r["file"]).stem for r in response.json()["results"]] == ["metal-b", "metal-a"]


def test_a_catalogued_track_finds_its_other_half_and_is_playable(
    service: ServiceProcess, excerpts: dict[str, Path]
) -> None:
    ids = ids_by_name(service)
    response = httpx.get(f"{service.url}/catalog/tracks/{ids['techno-b']}/similar")
    assert response.status_code == 200
    body = response.json()
    assert Path(body["query"]["file"]).stem == "techno-b"
    assert Path(body["results"][0]["file"]).stem == "techno-a"
    assert len(body["results"]) == 5
    audio = httpx.get(f"{service.url}{body['results'][0]['audio_url']}")
    assert audio.status_code == 200
    assert audio.content == excerpts["techno-a"].read_bytes()
    info = httpx.get(f"{service.url}/catalog").json()
    assert info["tracks"] == 6
    assert info["compatible"] is True
    assert (info["embedding_kind"], info["embedding_dim"], info["index"]) == (
        "backbone-mean-max",
        512,
        "exact",
    )


def test_bad_requests_get_problem_details(service: ServiceProcess) -> None:
    missing = httpx.get(f"{service.url}/catalog/tracks/4242/similar")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    assert "no track with id 4242" in missing.json()["detail"]
    assert httpx.get(f"{service.url}/catalog/tracks/4242").status_code == 404
    assert httpx.get(f"{service.url}/catalog/tracks/4242/audio").status_code == 404
    bad_tag = httpx.get(f"{service.url}/catalog/tracks/1/similar", params={"tag": "bagpipes"})
    assert bad_tag.status_code == 400
    assert "unknown tag 'bagpipes'" in bad_tag.json()["detail"]
    not_audio = httpx.post(f"{service.url}/similar", files={"file": ("x.mp3", b"hello" * 100)})
    assert not_audio.status_code == 415


def test_tag_returns_the_embedding_only_when_asked(
    service: ServiceProcess, excerpts: dict[str, Path]
) -> None:
    data = excerpts["techno-a"].read_bytes()
    asked = httpx.post(
        f"{service.url}/tag", files={"file": ("a.flac", data)},
        params={"embedding": "true", "segments": "true"}, timeout=60,
    ).json()  # fmt: skip
    vector = np.array(asked["embedding"]["vector"])
    assert asked["embedding"]["kind"] == "backbone-mean-max"
    assert asked["embedding"]["model_id"] == asked["model_id"]
    assert vector.shape == (512,)
    assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-4)
    assert [len(s["embedding"]) for s in asked["segments"]] == [512] * asked["windows"]
    plain = httpx.post(f"{service.url}/tag", files={"file": ("a.flac", data)}, timeout=60).json()
    assert plain["embedding"] is None
    # The same scores (up to bf16 rounding, which depends on how windows were batched).
    expected = [t["score"] for t in asked["tags"]]
    assert [t["score"] for t in plain["tags"]] == pytest.approx(expected, abs=2e-3)


def test_an_embedding_from_tag_searches_the_catalogue_without_a_second_pass(
    service: ServiceProcess, excerpts: dict[str, Path]
) -> None:
    data = excerpts["metal-a"].read_bytes()
    tagged = httpx.post(
        f"{service.url}/tag", files={"file": ("a.flac", data)},
        params={"embedding": "true", "top_k": 100, "synonyms": "all"}, timeout=60,
    ).json()  # fmt: skip
    scores = {t["tag"]: t["score"] for t in tagged["tags"]}
    body = {"embedding": tagged["embedding"], "scores": scores, "top": 2, "taxonomy": ["genre"]}
    found = httpx.post(f"{service.url}/catalog/search", json=body)
    assert found.status_code == 200, found.text
    assert [Path(r["file"]).stem for r in found.json()["results"]][:1] == ["metal-a"]
    short = {**tagged["embedding"], "vector": tagged["embedding"]["vector"][:10]}
    wrong = httpx.post(f"{service.url}/catalog/search", json={"embedding": short})
    assert wrong.status_code == 400
    assert "512 finite numbers" in wrong.json()["detail"]
    no_scores = {"embedding": tagged["embedding"], "taxonomy": ["genre"]}
    refused = httpx.post(f"{service.url}/catalog/search", json=no_scores)
    assert refused.status_code == 400
    assert "needs the query's scores" in refused.json()["detail"]


def test_the_service_reads_while_tagger_index_writes(
    service: ServiceProcess, served_catalog: Path, tmp_path: Path
) -> None:
    import soundfile

    from model.audio.decode import decode_audio

    music = fetch_music()
    folder = tmp_path / "more"
    folder.mkdir()
    samples = decode_audio(str(music / "nexuiz-music" / "chaos-fog.ogg"), sample_rate=RATE).samples
    for i in range(4):  # four new 8 s excerpts, committed one by one
        soundfile.write(folder / f"new-{i}.flac", samples[(10 + 20 * i) * RATE :][: 8 * RATE], RATE)
    errors: list[str] = []
    counts: list[int] = []
    stop = threading.Event()

    def read() -> None:
        with httpx.Client(base_url=service.url, timeout=30) as client:
            while not stop.is_set():
                response = client.get("/catalog/tracks/1/similar", params={"top": 50})
                if response.status_code != 200:
                    errors.append(response.text)
                else:
                    counts.append(len(response.json()["results"]))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        command = [sys.executable, "-m", "app.cli", "index", "build", str(folder), "--db",
                   str(served_catalog), "--no-progress", "--threads", "1"]  # fmt: skip
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    finally:
        stop.set()
        reader.join()
    assert result.returncode == 0, result.stderr
    assert not errors
    assert counts[0] >= 5  # the six excerpts but the query
    final = httpx.get(f"{service.url}/catalog/tracks/1/similar", params={"top": 50}).json()
    assert len(final["results"]) == 9  # and the four new ones, without a restart
    assert counts == sorted(counts)  # never a torn read


@pytest.fixture(scope="module")
def other_model_service(served_catalog: Path, checkpoint: Path) -> Iterator[ServiceProcess]:
    """A service running another model than the one that built the catalogue."""
    settings = {"catalog": str(served_catalog), "checkpoint": str(checkpoint), **SETTINGS}
    process = ServiceProcess(settings)
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()


def test_a_catalogue_of_another_model_answers_409_naming_both(
    other_model_service: ServiceProcess, excerpts: dict[str, Path], checkpoint: Path
) -> None:
    url = other_model_service.url
    mine = load_checkpoint(checkpoint).model_id
    info = httpx.get(f"{url}/catalog").json()
    assert info["compatible"] is False
    for response in (
        httpx.get(f"{url}/catalog/tracks/1/similar"),
        httpx.post(f"{url}/similar", files={"file": ("a.flac", excerpts["techno-a"].read_bytes())}),
    ):
        assert response.status_code == 409
        body = response.json()
        assert body["query_model_id"] == mine
        assert body["catalog_model_id"] == info["model_id"]
        assert mine in body["detail"]
        assert info["model_id"] in body["detail"]


def test_a_corrupt_catalogue_stops_the_start_up_with_a_clear_message(tmp_path: Path) -> None:
    broken = tmp_path / "broken.db"
    broken.write_bytes(b"not a database\n" * 500)
    settings = {"catalog": str(broken), **SETTINGS}
    process = ServiceProcess(settings)
    try:
        assert process.process.wait(timeout=60) != 0
    finally:
        process.stop()
    log = "".join(process.lines)
    assert "broken.db" in log
    assert "not a usable catalogue database" in log


@pytest.mark.anyio
async def test_without_a_catalogue_the_endpoints_say_how_to_get_one(checkpoint: Path) -> None:
    from tests.app.conftest import running_app, settings_for

    async with running_app(settings_for(checkpoint, warmup=False), ready=False) as (_, client):
        for response in (
            await client.get("/catalog"),
            await client.get("/catalog/tracks/1/similar"),
            await client.post("/similar", files={"file": ("a.mp3", b"ID3" + b"\0" * 100)}),
        ):
            assert response.status_code == 404
            assert response.json()["type"].endswith(":no-catalog")
            assert "TAGGER_CATALOG" in response.json()["detail"]
