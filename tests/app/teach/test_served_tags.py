"""Taught tags in the real service (`tagger serve` in a subprocess, `TAGGER_TAG_SETS`): in
`GET /tags` under their taxonomy, in `POST /tag` under their ids, selectable by taxonomy; a set
taught on another base stops `tagger serve` before it starts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.cli.main import main
from tests.app.conftest import MAIN_SERVER_SETTINGS
from tests.app.servers import ServiceProcess
from tests.app.teach.conftest import ROOT, V1, Taught


@pytest.fixture(scope="module")
def served(taught: Taught) -> Iterator[ServiceProcess]:
    settings = {**MAIN_SERVER_SETTINGS, "checkpoint": str(V1), "tag_sets": str(taught.path.parent)}
    process = ServiceProcess(settings)
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()


def test_get_tags_lists_the_taught_tags(served: ServiceProcess, taught: Taught) -> None:
    body = httpx.get(f"{served.url}/tags", timeout=30).json()
    ids = [t.get("id", t["name"]) for t in body["tags"]]
    assert ids[:2] == ["guitar", "classical"]  # the base tags first, named as before
    assert ids[50:] == ["custom/orchestral", "custom/techno"]
    assert [group["taxonomy"] for group in body["taxonomies"]] == [None, "custom"]
    techno = body["tags"][51]
    assert techno["taxonomy"] == "custom"
    assert techno["threshold"] == pytest.approx(taught.report["techno"]["threshold"], abs=1e-6)
    only = httpx.get(f"{served.url}/tags", params={"taxonomy": "custom"}, timeout=30).json()
    assert [t["id"] for t in only["tags"]] == ["custom/orchestral", "custom/techno"]


def test_post_tag_scores_the_taught_tags(served: ServiceProcess, examples: Path) -> None:
    clip = next(examples.glob("techno/*.flac")).read_bytes()
    response = httpx.post(
        f"{served.url}/tag",
        params={"top_k": 52},
        files={"file": ("clip.flac", clip, "audio/flac")},
        timeout=120,
    )
    assert response.status_code == 200, response.text
    scores = {t["tag"]: t["score"] for t in response.json()["tags"]}
    assert scores["custom/techno"] > scores["custom/orchestral"]
    assert "guitar" in scores
    chosen = httpx.post(
        f"{served.url}/tag",
        params={"taxonomy": "custom", "top_k": 2},
        files={"file": ("clip.flac", clip, "audio/flac")},
        timeout=120,
    )
    assert chosen.status_code == 200, chosen.text
    assert {t["tag"] for t in chosen.json()["tags"]} == {"custom/techno", "custom/orchestral"}


def test_serve_refuses_a_tag_set_of_another_base(
    taught: Taught, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TAGGER_CHECKPOINT", str(ROOT / "model" / "weights" / "default.safetensors"))
    monkeypatch.setenv("TAGGER_TAG_SETS", str(taught.path))
    assert main(["serve"]) == 1
    error = capsys.readouterr().err
    assert "cannot serve these tag sets" in error
    assert "tagger retrain" in error
