"""Hot reload of tag sets in the real service, under load: a set added to the folder is served
after the file change, SIGHUP reloads too, a broken set keeps the served ones, and no response
during any of it mixes two vocabularies or fails."""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from model.tagset import load_tag_set, save_tag_set
from tests.app.conftest import MAIN_SERVER_SETTINGS
from tests.app.servers import ServiceProcess
from tests.app.teach.conftest import V1, Taught

BASE = 50  # default-v1's own tags


@pytest.fixture(scope="module")
def folder(taught: Taught, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("sets")
    shutil.copy(taught.path, folder / "styles.safetensors")
    return folder


@pytest.fixture(scope="module")
def served(folder: Path) -> Iterator[ServiceProcess]:
    settings = {
        **MAIN_SERVER_SETTINGS,
        "checkpoint": str(V1),
        "tag_sets": str(folder),
        "tag_sets_poll_s": 0.5,
    }
    process = ServiceProcess(settings)
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()


def _studio_set(taught: Taught, path: Path) -> None:
    """The taught set under another name and taxonomy: two more tags, `studio/...`."""
    styles = load_tag_set(taught.path)
    studio = dataclasses.replace(
        styles,
        name="studio",
        taxonomy="studio",
        tags=tuple(
            dataclasses.replace(t, tag=dataclasses.replace(t.tag, taxonomy="studio"))
            for t in styles.tags
        ),
    )
    partial = path.with_name(".studio.partial")
    save_tag_set(partial, studio)
    os.replace(partial, path)  # appears whole, as a user's `mv` makes it


class Load:
    """Clients tagging one clip with segments (every tag's score) until stopped."""

    def __init__(self, url: str, clip: bytes, clients: int = 3) -> None:
        self.url, self.clip = url, clip
        self.vocabularies: list[frozenset[str]] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run) for _ in range(clients)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def _run(self) -> None:
        with httpx.Client(timeout=120) as client:
            while not self._stop.is_set():
                response = client.post(
                    f"{self.url}/tag",
                    params={"segments": True},
                    files={"file": ("clip.flac", self.clip, "audio/flac")},
                )
                if response.status_code != 200:
                    self.failures.append(f"{response.status_code}: {response.text[:200]}")
                    continue
                body = response.json()
                keys = {frozenset(segment["scores"]) for segment in body["segments"]}
                if len(keys) != 1 or not {t["tag"] for t in body["tags"]} <= next(iter(keys)):
                    self.failures.append(f"a response mixes vocabularies: {keys}")
                self.vocabularies.append(next(iter(keys)))


def _taught_ids(served: ServiceProcess) -> list[str]:
    tags = httpx.get(f"{served.url}/tags", timeout=30).json()["tags"]
    return [t["id"] for t in tags[BASE:]]


def _wait_for(served: ServiceProcess, ids: list[str], timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while sorted(_taught_ids(served)) != sorted(ids):  # folders' files load in name order
        assert time.monotonic() < deadline, f"still serving {_taught_ids(served)}"
        time.sleep(0.2)


def _reloads(served: ServiceProcess, outcome: str) -> float:
    text = httpx.get(f"{served.url}/metrics", timeout=10).text
    line = f'tagger_tag_set_reloads_total{{outcome="{outcome}"}}'
    values = [float(row.split()[-1]) for row in text.splitlines() if row.startswith(line)]
    return values[0] if values else 0.0


def test_reload_under_load(
    served: ServiceProcess, folder: Path, taught: Taught, examples: Path
) -> None:
    styles = ["custom/orchestral", "custom/techno"]
    studio = ["studio/orchestral", "studio/techno"]
    assert _taught_ids(served) == styles
    clip = next(examples.glob("techno/*.flac")).read_bytes()
    with Load(served.url, clip) as load:
        time.sleep(2)
        _studio_set(taught, folder / "studio.safetensors")  # a file change: reloaded
        _wait_for(served, styles + studio)
        time.sleep(2)
        (folder / "broken.safetensors").write_bytes(b"not a tag set")
        deadline = time.monotonic() + 120
        while _reloads(served, "failed") < 1:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert _taught_ids(served) == studio + styles  # the failed reload kept them
        (folder / "broken.safetensors").unlink()
        (folder / "studio.safetensors").unlink()
        os.kill(served.process.pid, signal.SIGHUP)  # and SIGHUP reloads at once
        _wait_for(served, styles)
        time.sleep(2)
    assert not load.failures, load.failures[:3]
    served_vocabularies = {frozenset(v) for v in load.vocabularies}
    base_ids = set(next(iter(load.vocabularies))) - set(styles) - set(studio)
    assert len(base_ids) == BASE
    assert served_vocabularies <= {
        frozenset(base_ids | set(styles)),
        frozenset(base_ids | set(styles) | set(studio)),
    }
    assert len(served_vocabularies) == 2  # both were served while the load ran
    assert _reloads(served, "ok") >= 2
