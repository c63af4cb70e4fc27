"""Top-k search latency over synthetic clip embeddings, memory-mapped from an Arrow IPC file.

    .venv/bin/python benchmarks/search_latency.py                 # 1,000,000 x 1280, top-10
    .venv/bin/python benchmarks/search_latency.py --rows 100000   # quicker

Embeddings are random unit vectors stored the way clips/ stores them (fixed_size_list<float32, D>), written once
to an Arrow IPC file and memory-mapped (no copy into Python memory). Lines, each the median over --queries
queries after one untimed warm-up query; the lines run in turn for each query (interleaved), so a change in
the machine's load hits all of them alike:

  full-sort  the baseline: one matrix-vector product over all rows, then a full argsort
  vidbatch   vidbatch.read.search.top_k: the product in blocks of --block-rows, argpartition per block, merged
  product    the matrix-vector product alone: one pass over the embeddings, the floor for any exact search

The ratio printed is full-sort / vidbatch (above 1: vidbatch is faster). All lines see the same file and
queries. The load average is printed too: on a shared machine it explains most of the spread between runs.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa

from vidbatch.read.embeddings import embedding_matrix
from vidbatch.read.search import BLOCK_ROWS, top_k

WRITE_BLOCK = 50_000


def write_embeddings(path: Path, rows: int, dim: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    schema = pa.schema([pa.field("embedding", pa.list_(pa.float32(), dim))])
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
        for start in range(0, rows, WRITE_BLOCK):
            n = min(WRITE_BLOCK, rows - start)
            block = rng.standard_normal((n, dim), dtype=np.float32)
            block /= np.linalg.norm(block, axis=1, keepdims=True)
            column = pa.FixedSizeListArray.from_arrays(pa.array(block.ravel()), dim)
            writer.write_batch(pa.record_batch([column], schema=schema))


def full_sort(matrix: np.ndarray, query: np.ndarray, k: int) -> np.ndarray:
    sims = matrix @ query
    return np.argsort(-sims)[:k]


def interleaved_medians(lines: dict[str, Callable[[np.ndarray], object]], queries: list[np.ndarray]) -> dict[str, float]:
    """Median ms per line; each query runs every line in turn, after one untimed warm-up round."""
    for fn in lines.values():
        fn(queries[0])  # warm-up: page cache, BLAS threads
    times: dict[str, list[float]] = {name: [] for name in lines}
    for q in queries:
        for name, fn in lines.items():
            t = time.perf_counter()
            fn(q)
            times[name].append((time.perf_counter() - t) * 1000)
    return {name: statistics.median(ts) for name, ts in times.items()}


def measure(path: Path, args: argparse.Namespace) -> tuple[float, float, float]:
    """(full-sort, vidbatch, product) ms over the memory-mapped file; checks both searches agree first."""
    with pa.memory_map(str(path)) as source:
        matrix = embedding_matrix(pa.ipc.open_file(source).read_all()["embedding"])
        assert not matrix.flags.owndata  # a view of the mapped file, not a copy
        rng = np.random.default_rng(1)
        queries = [np.array(matrix[i]) for i in rng.integers(0, args.rows, args.queries)]
        idx, _ = top_k(matrix, queries[0], args.k, args.block_rows)
        assert idx.tolist() == full_sort(matrix, queries[0], args.k).tolist()
        ms = interleaved_medians(
            {
                "full-sort": lambda q: full_sort(matrix, q, args.k),
                "vidbatch": lambda q: top_k(matrix, q, args.k, args.block_rows),
                "product": lambda q: matrix @ q,
            },
            queries,
        )
    return ms["full-sort"], ms["vidbatch"], ms["product"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=1280)
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument("--queries", type=int, default=9)
    parser.add_argument("--block-rows", type=int, default=BLOCK_ROWS)
    parser.add_argument("--dir", default=None, help="Where to write the embeddings file (default: a temp dir).")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        path = Path(tmp) / "embeddings.arrow"
        t = time.perf_counter()
        write_embeddings(path, args.rows, args.dim, seed=0)
        print(f"wrote {args.rows:,} x {args.dim} float32 ({path.stat().st_size / 2**30:.2f} GiB) in {time.perf_counter() - t:.1f} s")
        baseline, ours, product = measure(path, args)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load average {load}, numpy {np.__version__}")
    print(f"{'line':<10} {'top-' + str(args.k) + ' ms (median)':>22}")
    print(f"{'full-sort':<10} {baseline:>22.1f}")
    print(f"{'vidbatch':<10} {ours:>22.1f}")
    print(f"{'product':<10} {product:>22.1f}")
    print(f"ratio full-sort / vidbatch: {baseline / ours:.2f}x")


if __name__ == "__main__":
    main()
