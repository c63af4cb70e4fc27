"""`vidbatch search` over a real Delta clips table: the index path against the exact (streamed) path.

    # once (slow: writes the table, builds the index, computes exact answers; cached under --dir):
    PYTHONPATH=. .venv/bin/python benchmarks/indexed_search.py --rows 1000000 --build
    # the measurement (fresh child processes; run it under the exclusive lock):
    PYTHONPATH=. .venv/bin/python benchmarks/indexed_search.py --rows 1000000

Embeddings: synthetic clustered unit vectors of MobileNetV2's size (1280 float32; benchmarks/ann_choice.py's
Clusters: one centre per 100 clips, variation in a 64-D subspace plus isotropic noise), written with the job's
own commit code (vidbatch.store.delta.commit_table) as a clips table of --rows rows, and indexed by the code a run
calls when it commits (vidbatch.store.vector_index.update_indexes), timed. Queries are fresh vectors of the same
distribution (not stored); exact answers come from one streamed pass over the table.

The measurement starts fresh processes, each importing vidbatch.read.search as `vidbatch search` does:
  index   run_search(--like a stored clip) end to end (snapshot, catalog, memory-mapped index, rows) per call, and
          the HNSW query alone (IndexReader.search) for the fresh vectors: median ms, recall@10 against exact
  exact   run_search(--like, exact=True): the streamed exact search, one call (the baseline, same run)
and each process' peak RSS (VmHWM). The ratio printed is exact / index per call; the goals' lines follow.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).parent))
from ann_choice import Clusters  # noqa: E402

DIM = 1280
MODEL = "mobilenet_v2:IMAGENET1K_V1"


def write_table(out: str, rows: int, clusters: Clusters, first: int = 0, seq: int = 1, replace: str | None = None) -> None:
    """rows clips numbered from `first`, 100 per video, committed as one run would (seq: its commit)."""
    from vidbatch.store.committed import record_snapshot
    from vidbatch.store.delta import commit_table

    schema = pa.schema([
        ("clip_id", pa.string()), ("video_id", pa.string()), ("video_uri", pa.string()), ("start_s", pa.float64()),
        ("end_s", pa.float64()), ("labels", pa.list_(pa.string())), ("model", pa.string()),
        ("embedding", pa.list_(pa.float32())),
    ])

    def batches():
        start = first
        for block in clusters.sample(rows, seed=seq, block_rows=20_000):
            n = len(block)
            idx = np.arange(start, start + n)
            video = idx // 100
            yield pa.record_batch([
                pa.array([f"clip{i:08d}" for i in idx]), pa.array([f"video{v:06d}" for v in video]),
                pa.array([f"/archive/video{v:06d}.mp4" for v in video]), pa.array((idx % 100) * 2.0),
                pa.array((idx % 100) * 2.0 + 2.0), pa.array([["scene"]] * n, pa.list_(pa.string())),
                pa.array([MODEL] * n), pa.ListArray.from_arrays(pa.array(np.arange(0, (n + 1) * DIM, DIM, dtype=np.int32)), pa.array(block.ravel())),
            ], schema=schema)
            start += n

    commit_table(out, "clips", lambda: pa.RecordBatchReader.from_batches(schema, batches()), app_id="bench", seq=seq,
                 options=None, replace=replace)
    record_snapshot(out, None, "benchmark")


def exact_answers(out: str, queries: np.ndarray, k: int) -> np.ndarray:
    """Top-k clip numbers of every query in one streamed pass (vidbatch.read.embeddings.clip_batches)."""
    from vidbatch.read.embeddings import clip_batches, embedded_clips

    best_sim = np.full((len(queries), 0), -np.inf, np.float32)
    best_id = np.zeros((len(queries), 0), np.int64)
    for batch, matrix in clip_batches(embedded_clips(out), MODEL, []):
        ids = np.array([int(c[4:]) for c in batch["clip_id"].to_pylist()])
        sims = np.concatenate([best_sim, queries @ matrix.T], axis=1)
        every = np.concatenate([best_id, np.broadcast_to(ids, (len(queries), len(ids)))], axis=1)
        top = np.argsort(-sims, axis=1)[:, :k]
        best_sim, best_id = np.take_along_axis(sims, top, 1), np.take_along_axis(every, top, 1)
    return best_id


CHILD = r"""
import json, statistics, sys, time
import numpy as np
t0 = time.perf_counter()
from vidbatch.read.search import SearchQuery, run_search
from vidbatch.core.storage import OutputStore
from vidbatch.store.vector_index import IndexReader, read_catalog
out, mode, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
imported = time.perf_counter() - t0
def hwm():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) / 1024
result = {"import_s": imported}
like = [f"clip{i:08d}" for i in np.random.default_rng(5).integers(0, int(sys.argv[4]), n)]
times, self_found = [], 0
for cid in like:
    t = time.perf_counter()
    got = run_search(out, SearchQuery(like=cid), 10, exact=(mode == "exact"))
    times.append((time.perf_counter() - t) * 1000)
    self_found += got.hits[0]["clip_id"] == cid
result.update(call_ms=statistics.median(times), first_call_ms=times[0], method=got.method, self_found=self_found)
if mode == "index":
    store = OutputStore(out)
    version = max(int(p.stem[1:]) for p in (__import__("pathlib").Path(out) / "_index").glob("v*.json"))
    entry = next(iter(read_catalog(store, version).values()))
    t = time.perf_counter()
    reader = IndexReader(store, version, entry, "/tmp")
    result["open_ms"] = (time.perf_counter() - t) * 1000
    queries = np.load(sys.argv[5])
    qt, hits = [], []
    for q in queries:
        t = time.perf_counter()
        found = reader.search(q, 10)
        qt.append((time.perf_counter() - t) * 1000)
        hits.append([int(h.row["clip_id"][4:]) for h in found])
    result.update(query_ms=statistics.median(qt), query_p95_ms=float(np.percentile(qt, 95)), hits=hits)
result["peak_rss_mb"] = hwm()
print(json.dumps(result))
"""


CLI = r"""
import sys, time
t = time.perf_counter()
from vidbatch.cli import app
try:
    app(sys.argv[1:], standalone_mode=False)
finally:
    hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) / 1024
    print(f"CLI {(time.perf_counter() - t) * 1000:.0f} {hwm:.0f}", file=sys.stderr)
"""


def cli(out: Path, clip_id: str) -> tuple[float, float]:
    """(wall ms, peak RSS MiB) of one `vidbatch search OUT --like CLIP` process, imports included."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    done = subprocess.run([sys.executable, "-c", CLI, "search", str(out), "--like", clip_id, "-k", "10", "--format", "json"],
                          capture_output=True, text=True, env=env)
    line = [x for x in done.stderr.splitlines() if x.startswith("CLI ")][-1].split()
    if not done.stdout.strip():
        print("CLI refused the output:", done.stderr.strip().splitlines()[0][:200])
    return float(line[1]), float(line[2])


def child(out: Path, mode: str, calls: int, rows: int, qpath: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    done = subprocess.run([sys.executable, "-c", CHILD, str(out), mode, str(calls), str(rows), str(qpath)],
                          capture_output=True, text=True, env=env)
    if done.returncode:
        raise RuntimeError(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--calls", type=int, default=20, help="run_search calls of the index line")
    parser.add_argument("--dir", default=None, help="cache (default /tmp/vidbatch-indexed-search-ROWS)")
    parser.add_argument("--build", action="store_true", help="write the table, build the index, exact answers")
    parser.add_argument("--nightly", type=int, default=0, metavar="CLIPS",
                        help="after the measurement: commit CLIPS more clips (new videos, and re-processing the first "
                             "10 videos), time the incremental index update (changes the cached table)")
    args = parser.parse_args()
    cache = Path(args.dir or f"/tmp/vidbatch-indexed-search-{args.rows}")
    out, qpath, tpath = cache / "out", cache / "queries.npy", cache / "exact.npy"
    if args.build:
        from vidbatch.core.storage import OutputStore
        from vidbatch.store.vector_index import update_indexes

        cache.mkdir(parents=True, exist_ok=True)
        clusters = Clusters.make(max(1, args.rows // 100), DIM, 64, 0.6, 0.005)
        if not (out / "clips").exists():
            t = time.perf_counter()
            write_table(str(out), args.rows, clusters)
            print(f"wrote {args.rows:,} x {DIM} clips table in {time.perf_counter() - t:.0f} s")
        load = os.getloadavg()[0]
        t = time.perf_counter()
        version = update_indexes(OutputStore(str(out)), None)
        print(f"index of clips version {version} built in {time.perf_counter() - t:.0f} s "
              f"(load average {load:.1f} -> {os.getloadavg()[0]:.1f}, {os.cpu_count()} CPUs)")
        queries = np.concatenate(list(clusters.sample(args.queries, seed=2)))
        np.save(qpath, queries)
        t = time.perf_counter()
        np.save(tpath, exact_answers(str(out), queries, 10))
        print(f"exact answers of {args.queries} queries in one streamed pass: {time.perf_counter() - t:.0f} s")
        return

    table_gb = sum(f.stat().st_size for f in (out / "clips").glob("*.parquet")) / 2**30
    index_gb = sum(f.stat().st_size for f in (out / "_index").rglob("*.usearch")) / 2**30
    print(f"{args.rows:,} x {DIM} clips: table {table_gb:.2f} GiB, index {index_gb:.2f} GiB; "
          f"load average {os.getloadavg()[0]:.1f}, {os.cpu_count()} CPUs")
    indexed = child(out, "index", args.calls, args.rows, qpath)
    exact = child(out, "exact", 1, args.rows, qpath)
    cli_ms, cli_rss = cli(out, "clip00000042")
    truth = np.load(tpath)
    recall = float(np.mean([len(set(h) & set(t.tolist())) / 10 for h, t in zip(indexed["hits"], truth)]))
    print(f"index: run_search median {indexed['call_ms']:.1f} ms (first call {indexed['first_call_ms']:.0f} ms, "
          f"{args.calls} calls, the --like clip itself first in {indexed['self_found']}); HNSW query alone median {indexed['query_ms']:.2f} ms, p95 {indexed['query_p95_ms']:.2f} ms; "
          f"index open {indexed['open_ms']:.1f} ms; recall@10 {recall:.3f} ({args.queries} fresh queries); "
          f"peak RSS {indexed['peak_rss_mb']:.0f} MiB (import {indexed['import_s']:.1f} s)")
    print(f"exact: run_search {exact['call_ms']:.0f} ms; peak RSS {exact['peak_rss_mb']:.0f} MiB")
    print(f"CLI: `vidbatch search OUT --like ID` process {cli_ms:.0f} ms wall, imports included; peak RSS {cli_rss:.0f} MiB")
    print(f"ratio exact / index per run_search call: {exact['call_ms'] / indexed['call_ms']:.0f}x")
    if args.nightly:
        from vidbatch.core.storage import OutputStore
        from vidbatch.store.delta import in_predicate
        from vidbatch.store.vector_index import update_indexes

        clusters = Clusters.make(max(1, args.rows // 100), DIM, 64, 0.6, 0.005)
        replaced = [f"video{v:06d}" for v in range(10)]
        write_table(str(out), 1000, clusters, first=0, seq=2, replace=in_predicate("video_id", replaced))
        write_table(str(out), args.nightly, clusters, first=args.rows, seq=3)
        tpath.unlink()  # the exact answers no longer hold
        t = time.perf_counter()
        version = update_indexes(OutputStore(str(out)), None)
        print(f"nightly: 10 videos re-processed (1,000 clips) and {args.nightly:,} new clips in two commits; "
              f"incremental index update to clips version {version}: {time.perf_counter() - t:.0f} s")
    for goal, value, met in (
        ("top-10 <= 50 ms (run_search, end to end)", f"{indexed['call_ms']:.1f} ms", indexed["call_ms"] <= 50),
        ("recall@10 >= 0.95", f"{recall:.3f}", recall >= 0.95),
        ("process RSS <= 1 GB (index)", f"{indexed['peak_rss_mb']:.0f} MiB", indexed["peak_rss_mb"] <= 1024),
        ("process RSS <= 1 GB (the CLI process)", f"{cli_rss:.0f} MiB", cli_rss <= 1024),
        ("process RSS <= 1 GB (exact, streamed)", f"{exact['peak_rss_mb']:.0f} MiB", exact["peak_rss_mb"] <= 1024),
    ):
        print(f"goal: {goal}: {value} -> {'MET' if met else 'NOT MET'}")


if __name__ == "__main__":
    main()
