"""Nearest-neighbour indexes on a synthetic catalogue: build time, size, latency, recall@10.

A catalogue of `--n` unit vectors of the shipped embedding's dimension (512, q2l-small's
backbone mean+max) drawn around `--clusters` random centres in a low-dimensional space (music is
clustered: styles, albums; see `synthetic`), and `--queries` further vectors from the same
mixture. Exact search (one matrix product) gives the true ten
nearest neighbours; every index is built, then asked the queries one at a time, as a service
asks it:

- FAISS IVF as `app.catalog.index.VectorIndex.build` makes it (`IndexIVFFlat`, about √n
  lists trained on 64 vectors per list, nprobe 16): what the catalogue ships;
- exact search (numpy matrix-vector product over the float32 matrix), the reference;
- usearch HNSW (`usearch.index.Index`, inner product, connectivity 16, expansion 128 / 64, f16
  storage) and FAISS HNSW (`IndexHNSWFlat`, M 16, efConstruction 128, efSearch 64), on the first
  `--graph-n` vectors only: their build time grows faster than linearly (13 s for 50,000 at a
  quiet moment, 323 s for 200,000 at a busy one on this 2-core machine), so a million would not
  fit "a few minutes", which is the reason they were not chosen (docs/similarity.md).

Build time, size on disk (the saved index), resident memory added by the index, query latency
p50/p99 and recall@10 against exact search are printed and, with `--out`, written as JSON.

    nice .venv/bin/python scripts/similarity_scale.py --out docs/results/similarity-scale.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import json
import os
import platform
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

Matrix = npt.NDArray[np.float32]
Search = Callable[[Matrix, int], npt.NDArray[np.int64]]


def _rss_mb() -> float:
    """Resident memory now, MB (from /proc: ru_maxrss is the peak, not the current size)."""
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


def synthetic(n: int, dim: int, clusters: int, seed: int) -> Matrix:
    """Unit vectors around `clusters` centres in a 32-dimensional latent space, projected to
    `dim` with a little noise: embeddings of real music have a low intrinsic dimension, and
    full-rank noise would make every neighbour almost equally far."""
    rng = np.random.default_rng(seed)
    latent = 32
    centres = rng.standard_normal((clusters, latent), dtype=np.float32)
    projection = rng.standard_normal((latent, dim), dtype=np.float32) / np.sqrt(latent)
    out = np.empty((n, dim), dtype=np.float32)
    step = 100_000
    for start in range(0, n, step):
        size = min(step, n - start)
        which = rng.integers(0, clusters, size)
        points = centres[which] + 0.5 * rng.standard_normal((size, latent), dtype=np.float32)
        block = points @ projection + 0.05 * rng.standard_normal((size, dim), dtype=np.float32)
        out[start : start + size] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def exact_top(data: Matrix, queries: Matrix, k: int) -> npt.NDArray[np.int64]:
    top = np.empty((queries.shape[0], k), dtype=np.int64)
    for start in range(0, queries.shape[0], 100):
        scores = queries[start : start + 100] @ data.T
        part = np.argpartition(-scores, k, axis=1)[:, :k]
        order = np.take_along_axis(scores, part, axis=1).argsort(axis=1)[:, ::-1]
        top[start : start + 100] = np.take_along_axis(part, order, axis=1)
    return top


def measure(
    name: str,
    build: Callable[[], tuple[Search, Callable[[Path], None]]],
    queries: Matrix,
    truth: npt.NDArray[np.int64],
    k: int,
) -> dict[str, Any]:
    before = _rss_mb()
    started = time.perf_counter()
    search, save = build()
    build_s = time.perf_counter() - started
    memory = _rss_mb() - before
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "index"
        save(path)
        disk = sum(p.stat().st_size for p in Path(folder).iterdir()) / 1e6
    latencies = []
    hits = 0
    for i in range(queries.shape[0]):
        begun = time.perf_counter()
        found = search(queries[i : i + 1], k)
        latencies.append(time.perf_counter() - begun)
        hits += len(set(found.tolist()) & set(truth[i].tolist()))
    ms = np.array(latencies) * 1000
    result = {
        "index": name,
        "build_s": round(build_s, 1),
        "disk_mb": round(disk, 1),
        "memory_mb": round(memory, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
        f"recall@{k}": round(hits / truth.size, 4),
    }
    print(json.dumps(result), flush=True)
    return result


def _faiss_saver(index: Any) -> Callable[[Path], None]:
    import faiss

    def save(path: Path) -> None:
        faiss.write_index(index, str(path))

    return save


def usearch_index(data: Matrix, threads: int) -> tuple[Search, Callable[[Path], None]]:
    from usearch.index import Index

    index = Index(
        ndim=data.shape[1],
        metric="ip",
        dtype="f16",
        connectivity=16,
        expansion_add=128,
        expansion_search=64,
    )
    index.add(np.arange(data.shape[0]), data, threads=threads)

    def search(query: Matrix, k: int) -> npt.NDArray[np.int64]:
        return np.asarray(index.search(query[0], k).keys, dtype=np.int64)

    def save(path: Path) -> None:
        index.save(str(path))

    return search, save


def faiss_hnsw(data: Matrix, threads: int) -> tuple[Search, Callable[[Path], None]]:
    import faiss

    faiss.omp_set_num_threads(threads)
    index = faiss.IndexHNSWFlat(data.shape[1], 16, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = 128
    index.add(data)
    index.hnsw.efSearch = 64

    def search(query: Matrix, k: int) -> npt.NDArray[np.int64]:
        return np.asarray(index.search(query, k)[1][0], dtype=np.int64)

    return search, _faiss_saver(index)


def shipped_ivf(data: Matrix, threads: int) -> tuple[Search, Callable[[Path], None]]:
    """What `app.catalog.index.VectorIndex.build` makes for this many vectors."""
    import faiss

    from app.catalog.index import VectorIndex

    faiss.omp_set_num_threads(threads)
    index = VectorIndex.build(data.shape[1], np.arange(data.shape[0], dtype=np.int64), data)

    def search(query: Matrix, k: int) -> npt.NDArray[np.int64]:
        return np.array([i for i, _ in index.search(query[0], k)], dtype=np.int64)

    return search, _faiss_saver(index.index)


def exact(data: Matrix, threads: int) -> tuple[Search, Callable[[Path], None]]:
    def search(query: Matrix, k: int) -> npt.NDArray[np.int64]:
        scores = data @ query[0]
        part = np.argpartition(-scores, k)[:k]
        return part[np.argsort(-scores[part])]

    def save(path: Path) -> None:
        np.save(path.with_suffix(".npy"), data)

    return search, save


BUILDERS = {
    "faiss-ivf (shipped)": shipped_ivf,
    "exact": exact,
    "usearch-hnsw": usearch_index,
    "faiss-hnsw": faiss_hnsw,
}
GRAPHS = ("usearch-hnsw", "faiss-hnsw")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--clusters", type=int, default=2000)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--indexes", nargs="+", default=list(BUILDERS), choices=list(BUILDERS))
    parser.add_argument(
        "--graph-n", type=int, default=50_000,
        help="vectors for the HNSW graphs, whose build is too slow for --n on 2 cores",
    )  # fmt: skip
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    k = 10
    import faiss  # noqa: F401 - loaded before any memory is measured
    import usearch.index  # noqa: F401

    started = time.perf_counter()
    everything = synthetic(args.n + args.queries, args.dim, args.clusters, seed=0)
    data, queries = everything[: args.n], everything[args.n :].copy()
    print(f"{args.n:,} vectors of {args.dim} in {time.perf_counter() - started:.0f} s", flush=True)
    begun = time.perf_counter()
    truth = exact_top(data, queries, k)
    print(f"exact top-{k} of {args.queries} queries in {time.perf_counter() - begun:.0f} s")
    results = []
    small = data[: args.graph_n]
    small_truth = exact_top(small, queries, k)
    for name in args.indexes:
        graph = name in GRAPHS
        vectors = small if graph else data
        build = functools.partial(BUILDERS[name], vectors, args.threads)
        result = measure(name, build, queries, small_truth if graph else truth, k)
        results.append({"n": int(vectors.shape[0]), **result})
    if args.out:
        document = {
            "command": "python " + " ".join(sys.argv),
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, {args.threads} threads",
            "n": args.n,
            "dim": args.dim,
            "clusters": args.clusters,
            "queries": args.queries,
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3),
            "results": results,
        }
        args.out.write_text(json.dumps(document, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
