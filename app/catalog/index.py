"""The nearest-neighbour index over a catalogue's embeddings (FAISS), kept in step with it.

Why FAISS, and this index (figures in docs/similarity.md, from scripts/similarity_scale.py):
on the 2-core machine this project is built on, HNSW graphs (usearch, FAISS HNSW) took about
two minutes to build for 50,000 vectors, so a million-track catalogue would take most of an
hour; FAISS's inverted-file index builds a million in about a minute, answers in milliseconds
and keeps recall@10 high, and it adds and removes vectors by id without a rebuild.

- Below `EXACT_LIMIT` vectors the index is exact (`IndexFlatIP` under an id map): a scan of
  10,000 vectors of 512 floats takes about a millisecond, and there is nothing to train.
- From `EXACT_LIMIT` on it is `IndexIVFFlat` with about √n lists trained on the vectors present;
  `tagger index` retrains it when the catalogue has grown fourfold since (new vectors go into
  the existing lists until then, which only slowly costs recall).

Vectors are unit length, so inner product is cosine similarity. The index file sits next to the
database (`catalog.db.faiss`) with a small JSON sidecar (`catalog.db.faiss.json`) saying up to
which change of the database's log it holds. Readers load it and replay the later changes
(`CatalogIndex.refresh`); replaying is idempotent, so a reader that loads a newer file than its
sidecar said still ends up right.
"""

from __future__ import annotations

import json
import math
import os
import threading
from pathlib import Path

import faiss
import numpy as np
import numpy.typing as npt

from app.catalog.store import CatalogStore

EXACT_LIMIT = 10_000
RETRAIN_GROWTH = 4
NPROBE = 16
Ids = npt.NDArray[np.int64]
Matrix = npt.NDArray[np.float32]


def _exact(dim: int) -> faiss.Index:
    return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))


def _ivf(vectors: Matrix, ids: Ids) -> faiss.Index:
    dim = vectors.shape[1]
    lists = max(64, min(4096, round(math.sqrt(vectors.shape[0]))))
    quantiser = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFFlat(quantiser, dim, lists, faiss.METRIC_INNER_PRODUCT)
    sample = np.random.default_rng(0).choice(vectors.shape[0], min(64 * lists, len(ids)), False)
    index.train(vectors[np.sort(sample)])
    index.add_with_ids(vectors, ids)
    index.nprobe = NPROBE
    return index


class VectorIndex:
    """Ids to unit vectors; `search` returns (id, similarity) best first."""

    def __init__(self, index: faiss.Index, trained_size: int = 0) -> None:
        self.index = index
        self.trained_size = trained_size

    @classmethod
    def build(cls, dim: int, ids: Ids, vectors: Matrix) -> VectorIndex:
        """The right kind of index for this many vectors (see the module docstring)."""
        if len(ids) < EXACT_LIMIT:
            index = cls(_exact(dim))
            index.add(ids, vectors)
            return index
        return cls(_ivf(vectors, ids), trained_size=len(ids))

    @property
    def kind(self) -> str:
        return "ivf-flat" if isinstance(self.index, faiss.IndexIVF) else "exact"

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def needs_rebuild(self) -> bool:
        """Exact but past the limit, or IVF grown fourfold since it was trained."""
        if self.kind == "exact":
            return len(self) >= EXACT_LIMIT
        return len(self) >= RETRAIN_GROWTH * max(self.trained_size, 1)

    def add(self, ids: Ids, vectors: Matrix) -> None:
        if len(ids):
            self.index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), ids)

    def remove(self, ids: Ids) -> None:
        if len(ids):
            # faiss's Python wrapper takes an id array here (its stubs only know IDSelector).
            self.index.remove_ids(np.ascontiguousarray(ids, dtype=np.int64))  # type: ignore[arg-type]

    def search(self, vector: Matrix, count: int) -> list[tuple[int, float]]:
        count = min(count, len(self))
        if count <= 0:
            return []
        query = np.ascontiguousarray(vector.reshape(1, -1), dtype=np.float32)
        if isinstance(self.index, faiss.IndexIVF) and count >= len(self) // 4:
            # Asked for a large share of the catalogue (filters): look in every list, exactly.
            every = faiss.SearchParametersIVF()
            every.nprobe = self.index.nlist
            similarities, ids = self.index.search(query, count, params=every)
        else:
            similarities, ids = self.index.search(query, count)
        return [(int(i), float(s)) for i, s in zip(ids[0], similarities[0], strict=True) if i >= 0]

    def save(self, path: Path, seq: int) -> None:
        """Write the index, then its sidecar (readers read the sidecar first); both atomic."""
        partial = path.with_name(path.name + ".partial")
        faiss.write_index(self.index, str(partial))
        os.replace(partial, path)
        sidecar = {"seq": seq, "kind": self.kind, "trained_size": self.trained_size}
        note = _sidecar(path).with_name(_sidecar(path).name + ".partial")
        note.write_text(json.dumps(sidecar))
        os.replace(note, _sidecar(path))

    @classmethod
    def load(cls, path: Path) -> tuple[VectorIndex, int] | None:
        """The saved index and the change it holds up to, or None when there is none."""
        try:
            sidecar = json.loads(_sidecar(path).read_text())
            index = faiss.read_index(str(path))
        except (OSError, ValueError, RuntimeError):
            return None
        if isinstance(index, faiss.IndexIVF):
            index.nprobe = NPROBE
        return cls(index, int(sidecar.get("trained_size", 0))), int(sidecar["seq"])


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def index_path(database: Path) -> Path:
    return database.with_name(database.name + ".faiss")


class CatalogIndex:
    """A `VectorIndex` that follows a catalogue's change log; safe to call from many threads.

    Args:
        store: The catalogue.
        writer: Whether this process may rebuild the index and save it (`tagger index`).
    """

    def __init__(self, store: CatalogStore, *, writer: bool = False) -> None:
        self.store = store
        self.writer = writer
        self.path = index_path(store.path)
        self._lock = threading.Lock()
        self._seq = 0
        self._version: int | None = None
        self._mtime: int | None = None
        self._index: VectorIndex | None = None
        self.refresh()

    @property
    def dim(self) -> int | None:
        spec = self.store.spec
        return None if spec is None else spec.dim

    def refresh(self) -> None:
        """Catch up with what writers committed since the last call (cheap when nothing did)."""
        with self._lock:
            version = self.store.data_version()
            mtime = self._file_mtime()
            if self._index is not None and version == self._version and mtime == self._mtime:
                return
            if self._index is None or (mtime is not None and mtime != self._mtime):
                self._load()
            self._replay()
            self._version = version

    def _file_mtime(self) -> int | None:
        try:
            return _sidecar(self.path).stat().st_mtime_ns
        except OSError:
            return None

    def _load(self) -> None:
        dim = self.dim
        self._mtime = self._file_mtime()
        loaded = VectorIndex.load(self.path)
        if loaded is not None and dim is not None and loaded[0].index.d == dim:
            self._index, self._seq = loaded
            return
        # No file (or not this catalogue's): built from the database, the log then replays.
        self._seq = self.store.last_change()
        ids, vectors = self._all_vectors(dim or 1)
        self._index = VectorIndex.build(dim or 1, ids, vectors)

    def _all_vectors(self, dim: int) -> tuple[Ids, Matrix]:
        pairs = list(self.store.embeddings())
        ids = np.array([i for i, _ in pairs], dtype=np.int64)
        vectors = np.stack([v for _, v in pairs]) if pairs else np.empty((0, dim), np.float32)
        return ids, vectors.astype(np.float32)

    def _replay(self) -> None:
        assert self._index is not None
        changes = self.store.changes_since(self._seq)
        if not changes:
            return
        touched = np.array(sorted({track for _, track, _ in changes}), dtype=np.int64)
        self._index.remove(touched)  # idempotent: whatever the file held of them goes first
        pairs = list(self.store.embeddings(touched.tolist()))
        if pairs:
            ids = np.array([i for i, _ in pairs], dtype=np.int64)
            self._index.add(ids, np.stack([v for _, v in pairs]))
        self._seq = changes[-1][0]

    def save(self) -> None:
        """Writers only: rebuild if the index outgrew its kind, then write it next to the file."""
        assert self.writer, "only `tagger index` saves the index"
        with self._lock:
            self._replay()
            dim = self.dim
            if self._index is None or dim is None:
                return
            if self._index.needs_rebuild():
                ids, vectors = self._all_vectors(dim)
                self._seq = self.store.last_change()
                self._index = VectorIndex.build(dim, ids, vectors)
            self._index.save(self.path, self._seq)
            self._mtime = self._file_mtime()

    def search(self, vector: Matrix, count: int) -> list[tuple[int, float]]:
        self.refresh()
        with self._lock:
            assert self._index is not None
            return self._index.search(vector, count)

    def __len__(self) -> int:
        return 0 if self._index is None else len(self._index)

    @property
    def kind(self) -> str:
        return "exact" if self._index is None else self._index.kind
