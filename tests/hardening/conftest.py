"""Fixtures of the hardening tests (the real servers are started by each module)."""

from __future__ import annotations

from tests.app.conftest import file_server

__all__ = ["file_server"]  # the loopback file server of the service tests, shared
