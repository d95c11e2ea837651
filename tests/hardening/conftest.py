"""Fixtures of the hardening tests (the real servers are started by each module)."""

from __future__ import annotations

from tests.app.conftest import checkpoint, file_server
from tests.model.conftest import music

# Shared with the service tests (an untrained checkpoint, the loopback file server) and the
# model tests (real music fetched from Debian).
__all__ = ["checkpoint", "file_server", "music"]
