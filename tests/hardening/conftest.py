"""Fixtures of the hardening tests (the real servers are started by each module)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.app.servers import FileServer


@pytest.fixture
def file_server() -> Iterator[FileServer]:
    server = FileServer()
    try:
        yield server
    finally:
        server.close()
