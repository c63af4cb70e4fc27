"""Which ANN library backs `vidbatch search`: usearch (HNSW) against faiss-cpu (IVF + 8-bit scalar quantiser).

    PYTHONPATH=. .venv/bin/python benchmarks/ann_choice.py --rows 100000

Synthetic clustered unit vectors of MobileNetV2's size (1280 float32; --clusters centres, each vector a centre plus
Gaussian noise, re-normalised: clips of one video or scene lie close together, as real embeddings do). Queries are
fresh vectors of the same distribution (not in the index). Per candidate it prints: build seconds, index file
size, top-10 median ms over --queries queries (one thread, as `vidbatch search` asks one query), recall@10 against
exact search (numpy), the RSS of a fresh process that memory-maps the saved index and runs the queries, and
whether add and remove work on a loaded index (what a run's commit needs). The baseline is the exact search over
the in-memory matrix, measured in the same run.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Clusters:
    """Where synthetic embeddings lie: unit centres (scenes), a low-rank subspace along which clips of a scene
    vary (real CNN embeddings have a low intrinsic dimension; isotropic noise in 1280-D would make every
    neighbour equidistant, which no real archive looks like), plus a little isotropic noise."""

    centres: np.ndarray  # (clusters, dim)
    basis: np.ndarray  # (intrinsic, dim), orthonormal rows
    spread: float
    noise: float

    @classmethod
    def make(cls, clusters: int, dim: int, intrinsic: int, spread: float, noise: float, seed: int = 0) -> Clusters:
        rng = np.random.default_rng(seed)
        c = rng.standard_normal((clusters, dim), dtype=np.float32)
        basis = np.linalg.qr(rng.standard_normal((dim, intrinsic)).astype(np.float32))[0].T
        return cls(c / np.linalg.norm(c, axis=1, keepdims=True), np.ascontiguousarray(basis), spread, noise)

    def sample(self, rows: int, seed: int, block_rows: int = 50_000) -> Iterator[np.ndarray]:
        """Unit vectors in blocks (1M x 1280 is 5 GB: writers stream them)."""
        rng = np.random.default_rng(seed)
        k, dim = self.basis.shape
        for start in range(0, rows, block_rows):
            n = min(block_rows, rows - start)
            block = self.centres[rng.integers(0, len(self.centres), n)]
            block = block + (rng.standard_normal((n, k), dtype=np.float32) * (self.spread / k**0.5)) @ self.basis
            block += rng.standard_normal((n, dim), dtype=np.float32) * self.noise
            yield block / np.linalg.norm(block, axis=1, keepdims=True)


def clustered(clusters: Clusters, rows: int, seed: int) -> np.ndarray:
    return np.concatenate(list(clusters.sample(rows, seed)))


def exact(matrix: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    sims = queries @ matrix.T
    return np.argsort(-sims, axis=1)[:, :k]


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f.tolist()) & set(t.tolist())) / len(t) for f, t in zip(found, truth)]))


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


# the child process: memory-map the index, run the queries one at a time, report latency, hits and RSS
CHILD = r"""
import json, sys, time, statistics, numpy as np
kind, path, qpath, k, param = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
queries = np.load(qpath)
def rss():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmRSS")) / 1024
before = rss()
if kind == "usearch":
    from usearch.index import Index
    index = Index.restore(path, view=True)
    index.expansion_search = param
    search = lambda q: index.search(q, k, threads=1).keys
else:
    import faiss
    faiss.omp_set_num_threads(1)
    index = faiss.read_index(path, faiss.IO_FLAG_MMAP)
    index.nprobe = param
    search = lambda q: index.search(q[None], k)[1][0]
search(queries[0])
times, hits = [], []
for q in queries:
    t = time.perf_counter(); hits.append(np.asarray(search(q), np.int64).tolist()); times.append((time.perf_counter() - t) * 1000)
print(json.dumps({"ms": statistics.median(times), "hits": hits, "rss_mb": rss(), "rss_before_mb": before}))
"""


def child(kind: str, path: Path, qpath: Path, k: int, param: int) -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD, kind, str(path), str(qpath), str(k), str(param)],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def build_usearch(matrix: np.ndarray, path: Path, dtype: str, connectivity: int, expansion_add: int) -> float:
    from usearch.index import Index

    t = time.perf_counter()
    index = Index(ndim=matrix.shape[1], metric="cos", dtype=dtype, connectivity=connectivity, expansion_add=expansion_add)
    index.add(np.arange(len(matrix), dtype=np.uint64), matrix, threads=os.cpu_count() or 1)
    index.save(str(path))
    return time.perf_counter() - t


def build_faiss(matrix: np.ndarray, path: Path, nlist: int) -> float:
    import faiss

    faiss.omp_set_num_threads(os.cpu_count() or 1)
    t = time.perf_counter()
    quantiser = faiss.IndexFlatIP(matrix.shape[1])
    index = faiss.IndexIVFScalarQuantizer(quantiser, matrix.shape[1], nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
    index.train(matrix[np.random.default_rng(0).permutation(len(matrix))[: max(40 * nlist, 10_000)]])
    index.add_with_ids(matrix, np.arange(len(matrix), dtype=np.int64))
    faiss.write_index(index, str(path))
    return time.perf_counter() - t


def updatable(kind: str, path: Path, matrix: np.ndarray) -> str:
    """Load the saved index, remove 100 keys and add 100 vectors (what an incremental commit does)."""
    keys = np.arange(100)
    if kind == "usearch":
        from usearch.index import Index

        index = Index.restore(str(path))
        removed = index.remove(keys.astype(np.uint64))
        index.add(keys.astype(np.uint64) + len(matrix), matrix[:100])
        return f"remove {int(np.sum(removed))}/100, add ok, size {len(index)}"
    import faiss

    index = faiss.read_index(str(path))
    removed = index.remove_ids(keys)
    index.add_with_ids(matrix[:100], keys + len(matrix))
    return f"remove {removed}/100, add ok, size {index.ntotal}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=1280)
    parser.add_argument("--clusters", type=int, default=None, help="default: one per 100 rows (scenes of ~100 clips)")
    parser.add_argument("--intrinsic", type=int, default=64, help="dimension of the subspace a scene's clips vary in")
    parser.add_argument("--spread", type=float, default=0.6, help="how far a scene's clips lie from its centre")
    parser.add_argument("--noise", type=float, default=0.005, help="isotropic per-dimension noise")
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument("--dir", default=None)
    args = parser.parse_args()

    args.clusters = args.clusters or max(1, args.rows // 100)
    clusters = Clusters.make(args.clusters, args.dim, args.intrinsic, args.spread, args.noise)
    matrix = clustered(clusters, args.rows, seed=1)
    queries = clustered(clusters, args.queries, seed=2)  # same distribution, not in the index
    truth = exact(matrix, queries, args.k)
    times = []
    for q in queries:
        t = time.perf_counter()
        np.argpartition(matrix @ q, len(matrix) - args.k)[-args.k :]
        times.append((time.perf_counter() - t) * 1000)
    exact_ms = statistics.median(times)
    print(f"{args.rows:,} x {args.dim} float32 clustered ({args.clusters} centres, {args.intrinsic}-D spread "
          f"{args.spread}, noise {args.noise}), "
          f"{args.queries} queries, k={args.k}; load average {os.getloadavg()[0]:.1f}, {os.cpu_count()} CPUs")
    print(f"baseline exact (numpy, in memory, {matrix.nbytes / 2**20:.0f} MiB): {exact_ms:.1f} ms, RSS now {rss_mb():.0f} MiB")
    candidates = [
        ("usearch", "usearch hnsw i8 M=16 ef_add=64", dict(dtype="i8", connectivity=16, expansion_add=64), [64]),
        ("usearch", "usearch hnsw f16 M=16 ef_add=64", dict(dtype="f16", connectivity=16, expansion_add=64), [32, 64]),
        ("faiss", f"faiss ivf{max(16, int(4 * args.rows ** 0.5))} sq8", dict(nlist=max(16, int(4 * args.rows ** 0.5))), [8, 16]),
    ]
    print(f"{'candidate':<36} {'build s':>8} {'file MiB':>9} {'search':>8} {'top-10 ms':>10} {'recall@10':>10} {'RSS MiB':>8}  update")
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        qpath = Path(tmp) / "queries.npy"
        np.save(qpath, queries)
        for kind, name, params, search_params in candidates:
            path = Path(tmp) / f"{len(name)}.index"
            seconds = build_usearch(matrix, path, **params) if kind == "usearch" else build_faiss(matrix, path, **params)
            update = updatable(kind, path, matrix)
            for p in search_params:
                got = child(kind, path, qpath, args.k, p)
                label = ("ef=" if kind == "usearch" else "nprobe=") + str(p)
                print(f"{name:<36} {seconds:>8.1f} {path.stat().st_size / 2**20:>9.0f} {label:>8} {got['ms']:>10.2f} "
                      f"{recall(np.array(got['hits']), truth):>10.3f} {got['rss_mb']:>8.0f}  {update}")


if __name__ == "__main__":
    main()
