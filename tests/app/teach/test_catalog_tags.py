"""Taught tags in the catalogue: `tagger index build --tag-sets` stores their scores, and
`tagger similar --tag custom/...` filters by them; a catalogue refuses other tag sets later."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.catalog.store import CatalogStore
from app.cli.main import main
from tests.app.teach.conftest import V1, Taught


@pytest.fixture(scope="module")
def catalog(taught: Taught, examples: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    database = tmp_path_factory.mktemp("catalog") / "catalog.db"
    code = main(
        [
            "index", "build", str(examples), "--recursive", "--db", str(database),
            "--checkpoint", str(V1), "--tag-sets", str(taught.path), "--no-progress",
        ]
    )  # fmt: skip
    assert code == 0
    return database


def test_the_catalogue_stores_the_taught_tags(catalog: Path) -> None:
    store = CatalogStore(catalog, readonly=True)
    try:
        assert [t.id for t in store.tags[-2:]] == ["custom/orchestral", "custom/techno"]
        assert len(store) == 12
    finally:
        store.close()


def test_similar_filters_by_a_taught_tag(
    catalog: Path, examples: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    query = next(examples.glob("orchestral/*.flac"))
    capsys.readouterr()
    code = main(
        [
            "similar", str(query), "--db", str(catalog), "--tag", "custom/techno",
            "--min-score", "0.5", "--format", "json",
        ]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    results = json.loads(capsys.readouterr().out)["results"]
    assert results, "the techno excerpts pass a 0.5 filter on custom/techno"
    assert all("/techno/" in r["file"] for r in results)


def test_a_catalogue_refuses_other_tag_sets(
    catalog: Path, examples: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "index", "build", str(examples), "--recursive", "--db", str(catalog),
            "--checkpoint", str(V1), "--no-progress",
        ]
    )  # fmt: skip
    assert code == 2
    assert "built with other tags (now added: none; now missing: custom/orchestral" in (
        capsys.readouterr().err
    )
