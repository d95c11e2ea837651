"""Settings for the whole test session."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session", autouse=True)
def compile_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Compiled graphs go to a cache of this session's own (shared by its tests, so one model
    is compiled once), never to the user's cache; a test that wants a cold start passes its
    own folder."""
    if os.environ.get("TAGGER_COMPILE_CACHE_DIR"):
        yield
        return
    os.environ["TAGGER_COMPILE_CACHE_DIR"] = str(tmp_path_factory.mktemp("compile-cache"))
    try:
        yield
    finally:
        del os.environ["TAGGER_COMPILE_CACHE_DIR"]
