"""The architecture's import rules: `model` imports neither `app` nor `training`; `app` and
`training` never import each other (what both need, such as audio decoding, lives in `model`)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _imported_packages(package: str) -> set[str]:
    found: set[str] = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [("model", {"app", "training"}), ("app", {"training"}), ("training", {"app"})],
)
def test_no_forbidden_imports_in_source(package: str, forbidden: set[str]) -> None:
    assert not _imported_packages(package) & forbidden


def test_importing_model_loads_neither_app_nor_training() -> None:
    code = (
        "import sys, model, model.checkpoint, model.inference; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('app', 'training')); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
