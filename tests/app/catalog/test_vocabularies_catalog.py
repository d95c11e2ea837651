"""A catalogue of a two-vocabulary model (100-tag q2l-small, random weights) over real music:
results name tags by id, each synonym group once, and tag filters take ids, groups within a
taxonomy and unambiguous bare names; an ambiguous bare name is refused naming the candidates,
by the service (400 problem+json) and by `tagger similar`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.cli.main import main
from tests.app.servers import ServiceProcess

SETTINGS = {"max_batch_windows": 8, "max_wait_ms": 5, "torch_threads": 1}


@pytest.fixture(scope="module")
def two_catalog(
    two_vocabulary_checkpoint: Path,
    excerpts: dict[str, Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    database = tmp_path_factory.mktemp("two-catalog") / "catalog.db"
    folder = next(iter(excerpts.values())).parent
    build = ["index", "build", str(folder), "--db", str(database), "--no-progress"]
    assert main([*build, "--checkpoint", str(two_vocabulary_checkpoint)]) == 0
    return database


@pytest.fixture(scope="module")
def service(two_catalog: Path, two_vocabulary_checkpoint: Path) -> Iterator[ServiceProcess]:
    settings = {"catalog": str(two_catalog), "checkpoint": str(two_vocabulary_checkpoint)}
    process = ServiceProcess({**settings, **SETTINGS})
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()


def similar(service: ServiceProcess, **params: str | float) -> httpx.Response:
    return httpx.get(f"{service.url}/catalog/tracks/1/similar", params=params, timeout=60)


def test_results_name_tags_by_id_once_per_group(service: ServiceProcess) -> None:
    response = similar(service, top=5)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert len(results) == 5
    listing = httpx.get(f"{service.url}/tags").json()["tags"]
    group_of = {t["id"]: t["synonym_group"] for t in listing}
    for result in results:
        ids = [t["tag"] for t in result["top_tags"]]
        assert len(ids) == 5
        assert all(tag_id.split("/")[0] in ("mtt", "msd") for tag_id in ids)
        assert len({group_of[tag_id] for tag_id in ids}) == 5


def test_filters_take_ids_groups_and_unambiguous_names(service: ServiceProcess) -> None:
    for name in ("msd/rock", "mtt/vocal", "msd/female", "jazz"):
        response = similar(service, tag=name, min_score=0.0)
        assert response.status_code == 200, (name, response.text)
        assert len(response.json()["results"]) == 5  # every other track passes a 0 floor


def test_an_ambiguous_name_is_refused_naming_the_candidates(service: ServiceProcess) -> None:
    response = similar(service, tag="rock")
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["detail"] == (
        "tag 'rock' is ambiguous: it names mtt/rock, msd/rock; name one of them by its id"
    )
    assert body["candidates"] == ["mtt/rock", "msd/rock"]
    unknown = similar(service, tag="bagpipes")
    assert unknown.status_code == 400
    assert "unknown tag 'bagpipes'; the catalogue's tags are mtt/guitar" in unknown.json()["detail"]


def test_tagger_similar_names_ids_and_refuses_an_ambiguous_name(
    two_catalog: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["similar", "1", "--db", str(two_catalog), "--tag", "female"]) == 2
    assert "'female' is ambiguous: it names mtt/female, msd/female" in capsys.readouterr().err
    args = ["similar", "1", "--db", str(two_catalog), "--format", "json", "-n", "2"]
    assert main([*args, "--tag", "msd/female", "--min-score", "0"]) == 0
    rows = json.loads(capsys.readouterr().out)["results"]
    assert len(rows) == 2
    assert all("/" in tag["tag"] for row in rows for tag in row["top_tags"])
