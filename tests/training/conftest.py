"""Shared fixtures: one fake MagnaTagATune and its prepared dataset per test session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from tests.training.fakes import FakeMtat, make_fake_mtat, subset
from training.cli import main


@pytest.fixture(scope="session")
def fake_mtat(tmp_path_factory: pytest.TempPathFactory) -> FakeMtat:
    return make_fake_mtat(tmp_path_factory.mktemp("mtat"))


@pytest.fixture(scope="session")
def prepared(fake_mtat: FakeMtat, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fake MTAT prepared with the paper's folder split (prepare-mtat, one worker)."""
    out = tmp_path_factory.mktemp("prepared") / "mtat-folders"
    args = ["prepare-mtat", "--mtat", str(fake_mtat.root), "--split", "folders"]
    assert main([*args, "--out", str(out), "--workers", "1", "--no-progress"]) == 0
    return out


@pytest.fixture(scope="session")
def small_prepared(prepared: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A few clips of `prepared`: for tests that train several runs."""
    out = tmp_path_factory.mktemp("prepared") / "small"
    return subset(prepared, out, {"train": 8, "valid": 3, "test": 3})


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """One intra-op thread while a test trains (`pytestmark = usefixtures(...)`): on a shared
    two-core machine, two spinning OpenMP threads per process are several times slower than one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
