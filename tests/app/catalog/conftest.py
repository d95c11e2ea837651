"""Fixtures of the catalogue tests: excerpts of real music, and a catalogue built from them
(see tests/app/catalog/music.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.app.catalog.music import build_catalog, make_excerpts


@pytest.fixture(scope="session")
def excerpts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_excerpts(tmp_path_factory.mktemp("excerpts"))


@pytest.fixture(scope="session")
def catalog(tmp_path_factory: pytest.TempPathFactory, excerpts: dict[str, Path]) -> Path:
    """A catalogue of the six excerpts, built by `tagger index build` with the default model."""
    database = tmp_path_factory.mktemp("catalog") / "catalog.db"
    return build_catalog(next(iter(excerpts.values())).parent, database)
