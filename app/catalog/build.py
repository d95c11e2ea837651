"""Adding files to a catalogue: tag and embed them with the batch tagger, one commit per file.

Files are keyed by absolute path and skipped when their size and modification time are what the
catalogue recorded, so a second run over the same folders only tags new and changed files, and
an interrupted run resumes where it stopped (every finished file is already committed). Files
that no longer exist can be dropped (`prune`). The nearest-neighbour index follows the
database's change log and is saved at the end (`app.catalog.index`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from app.catalog.index import CatalogIndex
from app.catalog.store import CatalogStore
from app.cli.batch_tagging import BatchTagger, FileResult


@dataclass
class BuildReport:
    added: int = 0
    unchanged: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    removed: int = 0
    audio_seconds: float = 0.0


def key(path: str | Path) -> str:
    """How the catalogue names a file: its absolute path."""
    return os.path.abspath(path)


def _state(path: str) -> tuple[int, int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_size, stat.st_mtime_ns


def plan(store: CatalogStore, files: Sequence[str]) -> tuple[list[str], int]:
    """(files to tag, files unchanged since they were catalogued)."""
    known = store.file_states()
    todo = [f for f in files if known.get(key(f)) != _state(f) or known.get(key(f)) is None]
    return todo, len(files) - len(todo)


def prune(store: CatalogStore) -> int:
    """Drop catalogued files that no longer exist; returns how many."""
    gone = [path for path in store.file_states() if not os.path.exists(path)]
    return store.remove(gone)


def remove_paths(store: CatalogStore, paths: Sequence[str]) -> int:
    """Drop files, or every catalogued file below a folder; returns how many."""
    wanted = [key(p) for p in paths]
    catalogued = store.file_states()
    chosen = [
        path
        for path in catalogued
        if any(path == w or path.startswith(w.rstrip(os.sep) + os.sep) for w in wanted)
    ]
    return store.remove(chosen)


def add_files(
    store: CatalogStore,
    index: CatalogIndex,
    tagger: BatchTagger,
    files: Sequence[str],
    *,
    on_result: Callable[[FileResult], None] | None = None,
) -> BuildReport:
    """Tag `files` and commit each one as it finishes; the index is saved at the end, also
    when interrupted (KeyboardInterrupt is re-raised after saving)."""
    report = BuildReport()
    try:
        for result in tagger.tag(files):
            if result.ok and result.embedding is not None and result.track_scores is not None:
                state = _state(result.path)
                if state is None:
                    report.failed.append((result.path, "the file disappeared while indexing"))
                else:
                    store.put(
                        key(result.path),
                        size=state[0],
                        mtime_ns=state[1],
                        duration=result.duration_seconds,
                        container=result.container,
                        scores=result.track_scores.numpy(),
                        embedding=result.embedding.numpy(),
                    )
                    report.added += 1
                    report.audio_seconds += result.duration_seconds
            else:
                report.failed.append((result.path, result.error or "no embedding"))
            if on_result is not None:
                on_result(result)
    finally:
        index.save()
    return report
