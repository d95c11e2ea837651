"""Two vocabularies in the real service: a 100-tag q2l-small checkpoint (the 50 MTT and the 50 MSD
tags, random weights) served by `tagger serve` in a subprocess, and a bundled single-vocabulary
checkpoint that must answer exactly as before taxonomies."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.service.problems import PROBLEM_JSON
from model.tags import MTAT_TAG_NAMES
from tests.app.audio import encode
from tests.app.conftest import MAIN_SERVER_SETTINGS, MSD_ROCK_THRESHOLD
from tests.app.servers import FileServer, Route, ServiceProcess

ROOT = Path(__file__).resolve().parents[3]
# A bundled teacher: a checkpoint from before taxonomies, which stays single-vocabulary.
SINGLE_VOCABULARY = ROOT / "model" / "weights" / "musicnn-mtt.safetensors"
CLIP = encode("ogg", 6.0)
# The synonym groups of the two vocabularies (model/tags.py): 100 tags, 71 groups.
GROUPS = 71
OLD_TAG_FIELDS = ["tag", "score", "category", "synonym_group", "threshold", "passes_threshold"]


@pytest.fixture(scope="module")
def two(two_vocabulary_checkpoint: Path) -> Iterator[ServiceProcess]:
    process = ServiceProcess({"checkpoint": str(two_vocabulary_checkpoint), **MAIN_SERVER_SETTINGS})
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def single() -> Iterator[ServiceProcess]:
    process = ServiceProcess({"checkpoint": str(SINGLE_VOCABULARY), **MAIN_SERVER_SETTINGS})
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()


def tag(server: ServiceProcess, **params: Any) -> httpx.Response:
    files = {"file": ("clip.ogg", CLIP, "audio/ogg")}
    return httpx.post(f"{server.url}/tag", params=params, files=files, timeout=120)


def problem(response: httpx.Response, status: int = 400) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    body: dict[str, Any] = response.json()
    return body


# ----- GET /tags --------------------------------------------------------------------------------


def test_tags_lists_both_vocabularies_grouped_by_category(two: ServiceProcess) -> None:
    body = httpx.get(f"{two.url}/tags").json()
    assert len(body["tags"]) == 100
    ids = [t["id"] for t in body["tags"]]
    assert ids[0] == "mtt/guitar"
    assert ids[50] == "msd/rock"
    assert {"mtt/rock", "msd/rock", "msd/hip-hop", "msd/80s", "mtt/choral"} <= set(ids)
    assert body["tags"][50] == {
        "index": 50,
        "id": "msd/rock",
        "taxonomy": "msd",
        "name": "rock",
        "category": "genre",
        "synonym_group": "rock",
        "threshold": MSD_ROCK_THRESHOLD,
    }
    assert [group["taxonomy"] for group in body["taxonomies"]] == ["mtt", "msd"]
    msd = {c["category"]: c["tags"] for c in body["taxonomies"][1]["categories"]}
    assert list(msd) == ["genre", "era", "mood", "instrument", "vocal"]
    assert [t["name"] for t in msd["era"]] == ["00s", "80s", "90s", "oldies", "70s", "60s"]
    assert [t["id"] for t in msd["vocal"]] == [
        "msd/female vocalists",
        "msd/male vocalists",
        "msd/instrumental",
        "msd/female vocalist",
    ]
    mtt = {c["category"]: c["tags"] for c in body["taxonomies"][0]["categories"]}
    assert "era" not in mtt
    assert all(t["taxonomy"] == "mtt" for tags in mtt.values() for t in tags)


def test_tags_of_one_taxonomy(two: ServiceProcess) -> None:
    body = httpx.get(f"{two.url}/tags", params={"taxonomy": "msd"}).json()
    assert [t["index"] for t in body["tags"]] == list(range(50, 100))
    assert [group["taxonomy"] for group in body["taxonomies"]] == ["msd"]


def test_an_unknown_taxonomy_is_refused_naming_the_valid_ones(two: ServiceProcess) -> None:
    body = problem(httpx.get(f"{two.url}/tags", params={"taxonomy": "lastfm"}))
    assert body["detail"] == "unknown taxonomy 'lastfm'; this model's taxonomies are mtt, msd"
    assert body["taxonomies"] == ["mtt", "msd"]
    body = problem(tag(two, taxonomy="MSD"))
    assert "unknown taxonomy 'MSD'" in body["detail"]
    body = problem(httpx.post(f"{two.url}/tag/url", json={"url": "http://x/", "taxonomy": "x"}))
    assert body["taxonomies"] == ["mtt", "msd"]


# ----- POST /tag ------------------------------------------------------------------------------


def test_tags_are_named_by_id_and_each_synonym_group_comes_once(two: ServiceProcess) -> None:
    response = tag(two)
    assert response.status_code == 200, response.text
    tags = response.json()["tags"]
    assert len(tags) == 10
    for entry in tags:
        taxonomy, _, name = entry["tag"].partition("/")
        assert taxonomy in ("mtt", "msd")
        assert name
        assert entry["taxonomy"] == taxonomy
    groups = [entry["synonym_group"] for entry in tags]
    assert len(groups) == len(set(groups))

    # Asking for every tag lists each of the 71 groups once, best member first.
    everything = tag(two, top_k=100).json()["tags"]
    assert len(everything) == GROUPS
    assert len({entry["synonym_group"] for entry in everything}) == GROUPS


def test_synonyms_all_lists_every_member(two: ServiceProcess) -> None:
    tags = tag(two, top_k=100, synonyms="all").json()["tags"]
    assert len(tags) == 100
    ids = [entry["tag"] for entry in tags]
    assert {"mtt/rock", "msd/rock", "mtt/female", "msd/female vocalists"} <= set(ids)
    groups = Counter(entry["synonym_group"] for entry in tags)
    assert groups["female"] == 6
    assert groups["rock"] == 2
    # The grouped answer keeps, for every group, its best-scoring member.
    best: dict[str, float] = {}
    for entry in tags:
        best.setdefault(entry["synonym_group"], entry["score"])
    for entry in tag(two, top_k=100).json()["tags"]:
        assert entry["score"] == best[entry["synonym_group"]]


def test_threshold_decisions_stay_per_tag(two: ServiceProcess) -> None:
    tags = tag(two, top_k=100, synonyms="all").json()["tags"]
    rock = next(entry for entry in tags if entry["tag"] == "msd/rock")
    assert rock["threshold"] == MSD_ROCK_THRESHOLD
    assert rock["passes_threshold"] == (rock["score"] >= MSD_ROCK_THRESHOLD)
    assert {entry["threshold"] for entry in tags if entry["tag"] != "msd/rock"} == {0.5}


def test_one_taxonomy_in_top_k_and_segments(two: ServiceProcess) -> None:
    body = tag(two, taxonomy="msd", top_k=50, segments="true").json()
    assert {entry["taxonomy"] for entry in body["tags"]} == {"msd"}
    # MSD alone has 46 groups: female vocalists/female vocalist, electronic/electronica,
    # metal/heavy metal, chill/chillout, and nothing else, share one.
    assert len(body["tags"]) == 46
    for segment in body["segments"]:
        assert len(segment["scores"]) == 50
        assert all(key.startswith("msd/") for key in segment["scores"])
    mtt = tag(two, taxonomy="mtt", top_k=50, synonyms="all").json()["tags"]
    assert sorted(entry["tag"] for entry in mtt) == sorted(f"mtt/{n}" for n in MTAT_TAG_NAMES)
    body = problem(tag(two, taxonomy="msd", top_k=51))
    assert body["detail"] == "top_k must be between 1 and 50 (msd's tags), got 51"


def test_tag_url_takes_the_taxonomy_too(two: ServiceProcess, file_server: FileServer) -> None:
    file_server.routes["/clip.ogg"] = Route(CLIP, headers={"Content-Type": "audio/ogg"})
    response = httpx.post(
        f"{two.url}/tag/url",
        json={"url": f"{file_server.base}/clip.ogg", "taxonomy": "mtt", "top_k": 5},
        timeout=120,
    )
    assert response.status_code == 200, response.text
    assert [entry["tag"].split("/")[0] for entry in response.json()["tags"]] == ["mtt"] * 5


def test_explain_takes_ids_and_refuses_an_ambiguous_name(two: ServiceProcess) -> None:
    body = problem(tag(two, explain_tags="rock"))
    assert body["detail"] == (
        "tag 'rock' is ambiguous: it names mtt/rock, msd/rock; name one of them by its id"
    )
    response = tag(two, explain_tags=["msd/rock", "jazz"])
    assert response.status_code == 200, response.text
    maps = response.json()["explanations"]["maps"]
    assert [m["tag"] for m in maps] == ["msd/rock", "msd/jazz"]
    # With a taxonomy, a bare name is looked up in it.
    response = tag(two, explain_tags="rock", taxonomy="mtt")
    assert [m["tag"] for m in response.json()["explanations"]["maps"]] == ["mtt/rock"]


# ----- a single-vocabulary checkpoint answers as before taxonomies -----------------------------


def test_a_single_vocabulary_checkpoint_answers_as_before(single: ServiceProcess) -> None:
    response = tag(single, top_k=50, segments="true")
    assert response.status_code == 200, response.text
    body = response.json()
    tags = body["tags"]
    # Every tag, bare names, the old fields in the old order, synonyms not folded.
    assert sorted(entry["tag"] for entry in tags) == sorted(MTAT_TAG_NAMES)
    assert all(list(entry) == OLD_TAG_FIELDS for entry in tags)
    assert Counter(entry["synonym_group"] for entry in tags)["vocal"] == 4
    assert set(body["segments"][0]["scores"]) == set(MTAT_TAG_NAMES)

    listing = httpx.get(f"{single.url}/tags").json()
    assert listing["tags"][0] == {
        "index": 0,
        "name": "guitar",
        "category": "instrument",
        "synonym_group": "guitar",
        "threshold": 0.5,
    }
    assert [group["taxonomy"] for group in listing["taxonomies"]] == [None]


def test_a_single_vocabulary_checkpoint_has_no_taxonomy_to_select(single: ServiceProcess) -> None:
    body = problem(httpx.get(f"{single.url}/tags", params={"taxonomy": "mtt"}))
    assert "this model's vocabulary has no taxonomies" in body["detail"]
    assert body["taxonomies"] == []
    problem(tag(single, taxonomy="mtt"))
    # It can still fold synonyms when asked to.
    tags = tag(single, top_k=50, synonyms="one").json()["tags"]
    assert len({entry["synonym_group"] for entry in tags}) == len(tags)
