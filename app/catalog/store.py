"""The catalogue database: tracks, their scores and embeddings, in one SQLite file.

Standard-library `sqlite3`, WAL journal: `tagger index` writes while any number of readers (the
service, `tagger similar`) keep reading the last committed state. Tables:

    meta     key -> JSON value: schema version, the embedding's identity (model id, kind,
             dimension), the tag vocabulary and thresholds of the model that built it
    tracks   id, path (unique), size and mtime (to skip unchanged files), duration, container,
             scores (float32 blob, one per tag), embedding (float32 blob), added (UTC time)
    changes  seq, track id, op ('add' or 'remove'): the log the nearest-neighbour index
             follows, so adding or removing files never rebuilds it (see `app.catalog.index`)

Opening checks the file before anything is served: not SQLite, damaged pages
(`PRAGMA quick_check`) or another schema raise `CatalogError` naming the file.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from model.embedding import EmbeddingSpec
from model.tags import Tag

SCHEMA_VERSION = 1
Vector = npt.NDArray[np.float32]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tracks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    path TEXT NOT NULL UNIQUE,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    duration REAL NOT NULL,
    container TEXT NOT NULL,
    scores BLOB NOT NULL,
    embedding BLOB NOT NULL,
    added TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    track_id INTEGER NOT NULL,
    op TEXT NOT NULL CHECK (op IN ('add', 'remove'))
);
"""


class CatalogError(Exception):
    """A catalogue that cannot be used; the message names the file and what to do."""


class ModelMismatchError(CatalogError):
    """Embeddings of one model compared with a catalogue built by another."""

    def __init__(self, catalog: EmbeddingSpec, query: EmbeddingSpec) -> None:
        super().__init__(
            f"the catalogue was built with model {catalog.model_id} ({catalog.kind}, "
            f"{catalog.dim} dimensions) but the query's embedding comes from model "
            f"{query.model_id} ({query.kind}, {query.dim} dimensions); rebuild the catalogue "
            "with this model or query with that one"
        )
        self.catalog = catalog
        self.query = query


@dataclass(frozen=True)
class Track:
    """One catalogued file."""

    id: int
    path: str
    duration: float
    container: str
    scores: Vector
    embedding: Vector


def _blob(vector: Vector) -> bytes:
    return np.ascontiguousarray(vector, dtype="<f4").tobytes()


def _vector(blob: bytes) -> Vector:
    return np.frombuffer(blob, dtype="<f4").astype(np.float32)


class CatalogStore:
    """A connection to a catalogue file.

    Args:
        path: The SQLite file.
        readonly: Open for reading only (the service): the file must exist and is never
            changed. A writer (`tagger index`) creates the file and its tables when missing.
    """

    def __init__(self, path: Path, *, readonly: bool) -> None:
        self.path = path
        self.readonly = readonly
        if readonly and not path.is_file():
            raise CatalogError(f"{path}: no such catalogue; build one with `tagger index build`")
        uri = f"{path.resolve().as_uri()}?mode={'ro' if readonly else 'rwc'}"
        try:
            self._db = sqlite3.connect(uri, uri=True, check_same_thread=False, timeout=30.0)
            if not readonly:
                tables = {row[0] for row in self._db.execute("SELECT name FROM sqlite_master")}
                if tables and "meta" not in tables:  # never add tables to someone else's file
                    raise CatalogError(f"{path}: an SQLite file, but not a catalogue")
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.executescript(_SCHEMA)
            self._check()
        except sqlite3.DatabaseError as error:
            raise CatalogError(
                f"{path}: not a usable catalogue database ({error}); rebuild it with "
                "`tagger index build`"
            ) from None

    def _check(self) -> None:
        problems = [row[0] for row in self._db.execute("PRAGMA quick_check")]
        if problems != ["ok"]:
            raise CatalogError(f"{self.path}: the database is damaged ({'; '.join(problems[:3])})")
        tables = {row[0] for row in self._db.execute("SELECT name FROM sqlite_master")}
        if not {"meta", "tracks", "changes"} <= tables:
            raise CatalogError(f"{self.path}: an SQLite file, but not a catalogue")
        version = self.meta("schema_version")
        if version is None and not self.readonly:
            self._set_meta("schema_version", SCHEMA_VERSION)
        elif version != SCHEMA_VERSION:
            raise CatalogError(
                f"{self.path}: catalogue schema {version}, this version reads {SCHEMA_VERSION}"
            )

    def close(self) -> None:
        self._db.close()

    # ----- metadata -----------------------------------------------------------------------

    def meta(self, key: str) -> Any:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def _set_meta(self, key: str, value: Any) -> None:
        with self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, json.dumps(value))
            )

    @property
    def spec(self) -> EmbeddingSpec | None:
        """The embedding identity of the model that built the catalogue (None while empty)."""
        value = self.meta("embedding")
        if value is None:
            return None
        return EmbeddingSpec(str(value["model_id"]), str(value["kind"]), int(value["dim"]))

    @property
    def tags(self) -> tuple[Tag, ...]:
        return tuple(Tag.from_dict(tag) for tag in self.meta("tags") or [])

    @property
    def thresholds(self) -> tuple[float, ...]:
        return tuple(float(value) for value in self.meta("thresholds") or [])

    def bind_model(
        self, spec: EmbeddingSpec, tags: Sequence[Tag], thresholds: Sequence[float]
    ) -> None:
        """Record the model a new catalogue is built with; refuse another model later."""
        existing = self.spec
        if existing is None:
            self._set_meta("embedding", spec.to_dict())
            self._set_meta("tags", [tag.to_dict() for tag in tags])
            self._set_meta("thresholds", list(thresholds))
        elif existing != spec:
            raise ModelMismatchError(existing, spec)
        elif [tag.id for tag in self.tags] != [tag.id for tag in tags]:
            # Same model, other tag sets (model.tagset): the stored score rows would not line up.
            added = sorted({t.id for t in tags} - {t.id for t in self.tags})
            missing = sorted({t.id for t in self.tags} - {t.id for t in tags})
            raise CatalogError(
                f"{self.path}: the catalogue was built with other tags (now added: "
                f"{', '.join(added) or 'none'}; now missing: {', '.join(missing) or 'none'}); "
                "build it with the same tag sets, or build a new catalogue"
            )

    # ----- tracks -------------------------------------------------------------------------

    def __len__(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM tracks").fetchone()[0])

    def file_states(self) -> dict[str, tuple[int, int]]:
        """path -> (size, mtime_ns) of every catalogued file."""
        rows = self._db.execute("SELECT path, size, mtime_ns FROM tracks")
        return {path: (size, mtime) for path, size, mtime in rows}

    def put(
        self,
        path: str,
        *,
        size: int,
        mtime_ns: int,
        duration: float,
        container: str,
        scores: Vector,
        embedding: Vector,
    ) -> int:
        """Add a file, or replace its earlier entry (a changed file gets a new id)."""
        added = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        with self._db:
            self._remove(path)
            cursor = self._db.execute(
                "INSERT INTO tracks (path, size, mtime_ns, duration, container, scores, "
                "embedding, added) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (path, size, mtime_ns, duration, container, _blob(scores), _blob(embedding), added),
            )
            track_id = int(cursor.lastrowid or 0)
            self._db.execute("INSERT INTO changes (track_id, op) VALUES (?, 'add')", (track_id,))
        return track_id

    def remove(self, paths: Iterable[str]) -> int:
        """Drop files from the catalogue; returns how many were there."""
        with self._db:
            return sum(self._remove(path) for path in paths)

    def _remove(self, path: str) -> int:
        row = self._db.execute("SELECT id FROM tracks WHERE path = ?", (path,)).fetchone()
        if row is None:
            return 0
        self._db.execute("DELETE FROM tracks WHERE id = ?", (row[0],))
        self._db.execute("INSERT INTO changes (track_id, op) VALUES (?, 'remove')", (row[0],))
        return 1

    def track(self, track_id: int) -> Track | None:
        row = self._db.execute(
            "SELECT id, path, duration, container, scores, embedding FROM tracks WHERE id = ?",
            (track_id,),
        ).fetchone()
        return None if row is None else _track(row)

    def track_by_path(self, path: str) -> Track | None:
        row = self._db.execute(
            "SELECT id, path, duration, container, scores, embedding FROM tracks WHERE path = ?",
            (path,),
        ).fetchone()
        return None if row is None else _track(row)

    def tracks(self, ids: Sequence[int]) -> dict[int, Track]:
        """The tracks of `ids` that still exist, by id."""
        found: dict[int, Track] = {}
        for start in range(0, len(ids), 500):
            chunk = list(ids[start : start + 500])
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                "SELECT id, path, duration, container, scores, embedding FROM tracks "
                f"WHERE id IN ({marks})",
                chunk,
            )
            found.update((row[0], _track(row)) for row in rows)
        return found

    def embeddings(self, ids: Sequence[int] | None = None) -> Iterator[tuple[int, Vector]]:
        """(id, embedding) of the given tracks, or of all tracks in id order."""
        if ids is None:
            rows = self._db.execute("SELECT id, embedding FROM tracks ORDER BY id")
            yield from ((track_id, _vector(blob)) for track_id, blob in rows)
            return
        for track_id, track in self.tracks(ids).items():
            yield track_id, track.embedding

    # ----- the change log -----------------------------------------------------------------

    def last_change(self) -> int:
        row = self._db.execute("SELECT max(seq) FROM changes").fetchone()
        return int(row[0] or 0)

    def changes_since(self, seq: int) -> list[tuple[int, int, str]]:
        """(seq, track id, op) after `seq`, oldest first."""
        rows = self._db.execute(
            "SELECT seq, track_id, op FROM changes WHERE seq > ? ORDER BY seq", (seq,)
        )
        return [(int(s), int(t), str(op)) for s, t, op in rows]

    def data_version(self) -> int:
        """Changes when another connection commits (cheap: no read of the tables)."""
        return int(self._db.execute("PRAGMA data_version").fetchone()[0])


def _track(row: tuple[Any, ...]) -> Track:
    track_id, path, duration, container, scores, embedding = row
    return Track(
        int(track_id),
        str(path),
        float(duration),
        str(container),
        _vector(scores),
        _vector(embedding),
    )
