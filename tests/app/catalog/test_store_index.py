"""The catalogue database and its nearest-neighbour index, without a model: real SQLite files,
real FAISS indexes, vectors made up for the purpose."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from app.catalog.index import EXACT_LIMIT, CatalogIndex, VectorIndex, index_path
from app.catalog.store import CatalogError, CatalogStore, ModelMismatchError
from model.embedding import EmbeddingSpec
from model.tags import MTAT_TAGS

DIM = 8
SPEC = EmbeddingSpec("q2l-small@aaaaaaaaaaaa", "backbone-mean-max", DIM)


def unit(values: list[float]) -> np.ndarray:
    vector = np.array(values, dtype=np.float32)
    return vector / np.linalg.norm(vector)


def axis(i: int) -> np.ndarray:
    """The i-th unit vector: its only nearest neighbour is itself."""
    vector = np.zeros(DIM, dtype=np.float32)
    vector[i] = 1.0
    return vector


def new_store(path: Path) -> CatalogStore:
    store = CatalogStore(path, readonly=False)
    store.bind_model(SPEC, MTAT_TAGS, [0.5] * len(MTAT_TAGS))
    return store


def put(store: CatalogStore, name: str, embedding: np.ndarray) -> int:
    scores = np.full(len(MTAT_TAGS), 0.1, dtype=np.float32)
    return store.put(
        name,
        size=1,
        mtime_ns=1,
        duration=8.0,
        container="flac",
        scores=scores,
        embedding=embedding,
    )


def test_tracks_round_trip_and_replacing_a_file_gives_it_a_new_id(tmp_path: Path) -> None:
    store = new_store(tmp_path / "c.db")
    first = put(store, "/music/a.flac", axis(0))
    track = store.track(first)
    assert track is not None
    assert track.path == "/music/a.flac"
    assert track.embedding.tolist() == axis(0).tolist()
    again = put(store, "/music/a.flac", axis(1))
    assert again != first
    assert store.track(first) is None
    assert len(store) == 1
    assert [op for _, _, op in store.changes_since(0)] == ["add", "remove", "add"]


def test_a_catalogue_refuses_a_second_model(tmp_path: Path) -> None:
    store = new_store(tmp_path / "c.db")
    other = EmbeddingSpec("musicnn@bbbbbbbbbbbb", "penultimate-dense", 200)
    with pytest.raises(ModelMismatchError) as caught:
        store.bind_model(other, MTAT_TAGS, [0.5] * len(MTAT_TAGS))
    assert "q2l-small@aaaaaaaaaaaa" in str(caught.value)
    assert "musicnn@bbbbbbbbbbbb" in str(caught.value)


def test_unusable_files_are_refused_when_opened(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="no such catalogue"):
        CatalogStore(tmp_path / "missing.db", readonly=True)
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database at all\n" * 200)
    with pytest.raises(CatalogError, match="not a usable catalogue"):
        CatalogStore(garbage, readonly=True)
    foreign = tmp_path / "foreign.db"
    with sqlite3.connect(foreign) as db:
        db.execute("CREATE TABLE songs (name TEXT)")
    with pytest.raises(CatalogError, match="not a catalogue"):
        CatalogStore(foreign, readonly=True)
    with pytest.raises(CatalogError, match="not a catalogue"):
        CatalogStore(foreign, readonly=False)  # and a writer leaves it alone
    with sqlite3.connect(foreign) as db:
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master")]
    assert tables == ["songs"]


def test_a_damaged_catalogue_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    store = new_store(path)
    for i in range(200):
        put(store, f"/music/{i}.flac", unit([1.0 + i, 2.0, 3, 4, 5, 6, 7, 8]))
    store.close()
    data = bytearray(path.read_bytes())
    page = 4096
    data[3 * page : 6 * page] = b"\xff" * (3 * page)  # overwrite pages inside the tables
    path.write_bytes(bytes(data))
    with pytest.raises(CatalogError, match=r"c\.db"):
        CatalogStore(path, readonly=True)


def test_a_reader_follows_additions_and_removals_without_rebuilding(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    writer = new_store(path)
    a = put(writer, "/music/a.flac", axis(0))
    CatalogIndex(writer, writer=True).save()
    reader_store = CatalogStore(path, readonly=True)
    reader = CatalogIndex(reader_store)
    assert [(i, round(s, 5)) for i, s in reader.search(axis(0), 1)] == [(a, 1.0)]
    b = put(writer, "/music/b.flac", axis(1))  # committed by the writer, index file not saved
    assert [(i, round(s, 5)) for i, s in reader.search(axis(1), 1)] == [(b, 1.0)]
    writer.remove(["/music/a.flac"])
    assert [i for i, _ in reader.search(axis(0), 5)] == [b]
    assert len(reader) == 1


def test_a_reader_that_loads_a_newer_file_than_its_log_position_ends_up_right(
    tmp_path: Path,
) -> None:
    path = tmp_path / "c.db"
    writer = new_store(path)
    ids = [put(writer, f"/music/{i}.flac", axis(i)) for i in range(3)]
    index = CatalogIndex(writer, writer=True)
    index.save()
    # The sidecar claims an older log position than the file holds: replaying is idempotent.
    sidecar = Path(str(index_path(path)) + ".json")
    sidecar.write_text('{"seq": 0, "kind": "exact", "trained_size": 0}')
    reader = CatalogIndex(CatalogStore(path, readonly=True))
    assert len(reader) == 3
    assert sorted(i for i, _ in reader.search(axis(2), 3)) == sorted(ids)


def test_large_catalogues_get_an_approximate_index_with_high_recall() -> None:
    rng = np.random.default_rng(0)
    n = EXACT_LIMIT + 2000
    centres = rng.standard_normal((200, DIM)).astype(np.float32)
    vectors = centres[rng.integers(0, 200, n)] + 0.3 * rng.standard_normal((n, DIM))
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    ids = np.arange(1, n + 1, dtype=np.int64)
    small = VectorIndex.build(DIM, ids[:100], vectors[:100])
    assert small.kind == "exact"
    index = VectorIndex.build(DIM, ids, vectors)
    assert index.kind == "ivf-flat"
    hits = 0
    for q in range(50):
        truth = set(np.argsort(-(vectors @ vectors[q]))[:10] + 1)
        hits += len(truth & {i for i, _ in index.search(vectors[q], 10)})
    assert hits / 500 >= 0.9
    # Asked for the whole catalogue (what growing filtered searches end with): exact.
    assert len(index.search(vectors[0], n)) == n
