"""One local Ray (2 CPUs, a small object store, no dashboard) per test module, shut down after
it with every process it started; and a small folder of real music with one broken file."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from tests.model.conftest import music  # noqa: F401  (the real-music fixture, reused)

# 8.5 s, 14.2 s, 26.8 s and 48.4 s of real music (Debian's wesnoth-1.16-music, nexuiz-music).
TRACKS = (
    "wesnoth-1.16-music/defeat.ogg",
    "wesnoth-1.16-music/defeat2.ogg",
    "wesnoth-1.16-music/elf-land.ogg",
    "nexuiz-music/thunder.ogg",
)
BROKEN = "broken.mp3"


def require_ray() -> ModuleType:
    """The ray module; a skip without the scale extra, a failure in CI (which installs it)."""
    try:
        import ray
    except ImportError:
        message = "ray is not installed: pip install '.[scale]' (make install does)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return ray


def _children(parents: set[int]) -> set[int]:
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) in parents:
                found.add(int(entry))
    return found


def _alive(pid: int) -> bool:
    """Running (a zombie has exited and only waits for its parent to read its status)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.fixture(scope="module")
def local_ray() -> Iterator[str]:
    """A local Ray cluster for the module; yields its address for other processes."""
    ray = require_ray()
    ray.init(
        address="local", num_cpus=2, object_store_memory=300 * 1024**2, include_dashboard=False
    )
    node = ray._private.worker._global_node
    try:
        yield str(node.address)
    finally:
        # Ray's own processes (GCS, raylet, monitors) and the workers the raylet started.
        own = {i.process.pid for infos in node.all_processes.values() for i in infos if i.process}
        started = own | _children(own)
        ray.shutdown()
        deadline = time.monotonic() + 20
        while any(_alive(pid) for pid in started) and time.monotonic() < deadline:
            time.sleep(0.2)
    left = sorted(pid for pid in started if _alive(pid))
    assert not left, f"Ray processes left running after shutdown: {left}"


@pytest.fixture(scope="module")
def songs(tmp_path_factory: pytest.TempPathFactory, music: Path) -> Path:  # noqa: F811
    """Four real tracks and a file named like audio that is not."""
    folder = tmp_path_factory.mktemp("songs")
    for track in TRACKS:
        shutil.copy(music / track, folder / Path(track).name)
    (folder / BROKEN).write_text("this is not audio\n")
    return folder
