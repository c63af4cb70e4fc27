"""The search index: built when a run commits, updated by the next run (replaced videos' rows out, new rows in),
the same answers as exact search, never used for a clips version it does not cover; train-head on streamed
batches."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from kinds import kind_frames
from typer.testing import CliRunner
from videos import make_video

import vidbatch
from vidbatch.cli import app
from vidbatch.core.storage import OutputStore
from vidbatch.infer.linear_head import LinearHead
from vidbatch.read.query import run_query
from vidbatch.read.search import SearchQuery, run_search
from vidbatch.store.committed import record_snapshot, snapshot_versions
from vidbatch.store.delta import commit_table, in_predicate
from vidbatch.store.vector_index import (
    INDEX_DIR,
    catalog_path,
    read_catalog,
    update_indexes,
)

SCHEMA = pa.schema([
    ("clip_id", pa.string()), ("video_id", pa.string()), ("video_uri", pa.string()), ("start_s", pa.float64()),
    ("end_s", pa.float64()), ("labels", pa.list_(pa.string())), ("model", pa.string()), ("embedding", pa.list_(pa.float32())),
])


def clips(videos: list[str], per_video: int, seed: int, dim: int = 24, model: str = "m:w") -> pa.Table:
    rng = np.random.default_rng(seed)
    rows = []
    for v in videos:
        for i in range(per_video):
            e = rng.standard_normal(dim).astype(np.float32)
            rows.append({"clip_id": f"{v}-{i}", "video_id": v, "video_uri": f"/a/{v}.mp4", "start_s": float(i),
                         "end_s": i + 1.0, "labels": [f"l{i % 3}"], "model": model, "embedding": (e / np.linalg.norm(e)).tolist()})
    return pa.Table.from_pylist(rows, schema=SCHEMA)


def commit(out: str, table: pa.Table, seq: int, replace: list[str] | None = None) -> int:
    version = commit_table(out, "clips", table, app_id="t", seq=seq, options=None,
                           replace=in_predicate("video_id", replace) if replace else None)
    record_snapshot(out, None, "test")
    return version


def same_as_exact(out: str, clip_ids: list[str], k: int = 8) -> None:
    for cid in clip_ids:
        indexed = run_search(out, SearchQuery(like=cid), k)
        exact = run_search(out, SearchQuery(like=cid), k, exact=True)
        assert indexed.method == "index" and exact.method == "exact"
        np.testing.assert_allclose([h["similarity"] for h in indexed.hits], [h["similarity"] for h in exact.hits], atol=2e-3)
        # clips of a still scene tie: the same clips, in any order among equals (f16 similarities)
        clear = [h for h in exact.hits if h["similarity"] > exact.hits[-1]["similarity"] + 2e-3]
        found = {h["clip_id"]: h for h in indexed.hits}
        assert all(h["clip_id"] in found and found[h["clip_id"]] == {**h, "similarity": found[h["clip_id"]]["similarity"]}
                   for h in clear), cid


def test_incremental_update_removes_replaced_videos_and_matches_exact_search(tmp_path: Path):
    out = str(tmp_path / "out")
    store = OutputStore(out)
    v0 = commit(out, clips(["a", "b", "c"], 40, seed=0), seq=1)
    assert update_indexes(store, None) == v0
    v1 = commit(out, clips(["b", "d"], 30, seed=1), seq=2, replace=["b", "d"])  # b replaced (40 -> 30 clips), d new
    assert update_indexes(store, None) == v1
    (entry,) = read_catalog(store, v1).values()
    assert entry.rows == 40 + 40 + 30 + 30 and entry.dim == 24
    same_as_exact(out, ["a-0", "b-5", "c-39", "d-29"])
    assert not any(h["clip_id"] in {f"b-{i}" for i in range(30, 40)} for h in run_search(out, SearchQuery(like="b-3"), 200).hits)
    assert update_indexes(store, None) == v1  # idempotent: a resumed run changes nothing


def test_a_stale_index_is_not_used(tmp_path: Path):
    out = str(tmp_path / "out")
    store = OutputStore(out)
    commit(out, clips(["a", "b"], 20, seed=0), seq=1)
    update_indexes(store, None)
    first_run = json.loads(sorted((tmp_path / "out" / "runs").iterdir())[-1].read_text())["run_id"]
    v1 = commit(out, clips(["c"], 20, seed=1), seq=2)  # committed without an index update: a crash, say
    stale = run_search(out, SearchQuery(like="c-1"), 5)
    assert stale.method == "exact" and f"no index of clips version {v1}" in stale.note and stale.hits[0]["clip_id"] == "c-1"
    old = run_search(out, SearchQuery(like="a-1"), 50, as_of=first_run)  # that run's snapshot has its index
    assert old.method == "index" and not any(h["clip_id"].startswith("c-") for h in old.hits)
    (tmp_path / "out" / catalog_path(v1 - 1)).write_text(json.dumps({"format": 1, "clips_version": v1, "models": []}))
    assert read_catalog(store, v1 - 1) is None  # a catalog whose content names another version is refused too
    update_indexes(store, None)
    assert run_search(out, SearchQuery(like="c-1"), 5).method == "index"


def test_linear_head_from_streamed_batches_equals_one_batch():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 16)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0.3).astype(np.int64)
    whole = LinearHead.fit_batches(lambda: [(x, y)], ["no", "yes"], "m:w")
    parts = LinearHead.fit_batches(lambda: [(x[i : i + 64], y[i : i + 64]) for i in range(0, 300, 64)], ["no", "yes"], "m:w")
    np.testing.assert_allclose(whole.probabilities(x), parts.probabilities(x), atol=1e-4)
    assert (whole.probabilities(x).argmax(axis=1) == y).mean() > 0.95


@pytest.mark.e2e
def test_runs_commit_and_update_the_index(kinds_output, mobilenet_weights, tmp_path: Path):
    src, archive, _, _ = kinds_output
    out, videos = tmp_path / "out", tmp_path / "videos"
    shutil.copytree(src, out)  # the session's shared output stays as the job wrote it
    shutil.copytree(archive, videos)
    store = OutputStore(str(out))
    version = snapshot_versions(str(out))["clips"]
    (entry,) = read_catalog(store, version).values()  # the run built it: one model
    assert entry.model == "mobilenet_v2:IMAGENET1K_V1" and entry.rows == run_query(str(out), "SELECT count(*) n FROM clips")["n"][0].as_py()
    ids = [r["clip_id"] for r in run_query(str(out), "SELECT clip_id FROM clips ORDER BY clip_id").to_pylist()]
    same_as_exact(str(out), ids[::3], k=5)

    # a second run: one new video, one re-encoded (its clips are replaced by video_id)
    make_video(videos / "stripes9.mp4", fps=10, width=192, height=144, frames=kind_frames("stripes", 2, 30, 192, 144))
    make_video(videos / "gradient0.mp4", fps=10, width=192, height=144, frames=kind_frames("gradient", 1, 20, 192, 144))
    summary = vidbatch.run({
        "inputs": [str(videos)], "output": str(out), "clips": {"clip_seconds": 1.0}, "sampling": {"frames_per_clip": 2},
        "tasks": [{"task": "classify", "weights_path": mobilenet_weights, "top_k": 3}], "inference": {"batch_size": 16},
        "incremental": {"enabled": True},
    })
    after = summary.table_versions["clips"]
    assert after > version and read_catalog(store, after) is not None
    (entry,) = read_catalog(store, after).values()
    now = [r["clip_id"] for r in run_query(str(out), "SELECT clip_id FROM clips ORDER BY clip_id").to_pylist()]
    assert entry.rows == len(now) and set(now) != set(ids)
    new = run_query(str(out), "SELECT clip_id FROM clips WHERE video_uri LIKE '%stripes9.mp4' OR video_uri LIKE '%gradient0.mp4'")
    same_as_exact(str(out), new["clip_id"].to_pylist(), k=5)

    runner = CliRunner()
    indexed = runner.invoke(app, ["search", str(out), "--like", now[0], "-k", "3", "--format", "json"])
    exact = runner.invoke(app, ["search", str(out), "--like", now[0], "-k", "3", "--format", "json", "--exact"])
    assert indexed.exit_code == 0 and exact.exit_code == 0, indexed.output + exact.output
    assert f"index of clips version {after}" in indexed.stderr and "exact search (--exact)" in exact.stderr
    # clips of a still scene tie, so the two may order equals differently: compare the similarities
    sims = [[h["similarity"] for h in json.loads(r.stdout)] for r in (indexed, exact)]
    assert sims[0] == pytest.approx(sims[1], abs=2e-3) and sims[1][0] == pytest.approx(1.0, abs=1e-5)
    assert (out / INDEX_DIR).is_dir() and not (out / "clips" / INDEX_DIR).exists()
    vacuumed = runner.invoke(app, ["vacuum", str(out), "--retain-hours", "0"])
    assert vacuumed.exit_code == 0, vacuumed.output
    assert run_search(str(out), SearchQuery(like=now[0]), 3).method == "index"  # vacuum keeps the index
