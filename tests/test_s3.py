"""The job on s3:// through s3fs against a real S3 server on loopback: same rows as on local files, credentials
never written, and transient store faults (503 SlowDown, dropped connections) survived."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import s3fs
from s3server import FaultProxy

import vidbatch
from vidbatch.store.committed import read_table

pytestmark = pytest.mark.e2e

COMPARED = ["video_id", "clip_index", "start_s", "end_s", "frame_times_s", "labels"]


def clip_rows(out: str, options: dict | None = None) -> list[dict]:
    table = read_table(out, "clips", options)
    rows = sorted(table.to_pylist(), key=lambda r: (r["video_uri"].rsplit("/", 1)[-1], r["clip_index"]))
    return [{**{k: r[k] for k in COMPARED if k != "video_id"}, "name": r["video_uri"].rsplit("/", 1)[-1],
             "scores": r["scores"]} for r in rows]


def assert_same_rows(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert {k: v for k, v in x.items() if k != "scores"} == {k: v for k, v in y.items() if k != "scores"}
        assert x["scores"] == pytest.approx(y["scores"], abs=1e-5)


@pytest.fixture(scope="module")
def bucket(s3_endpoint, video_dir: Path):
    _, options = s3_endpoint
    fs = s3fs.S3FileSystem(**options)
    fs.mkdir("vb-test")
    for f in sorted(video_dir.rglob("*")):
        if f.is_file():
            fs.put_file(str(f), f"vb-test/archive/{f.relative_to(video_dir)}")
    return fs


def job(inputs: str, output: str, weights: str, options: dict | None = None) -> dict:
    return {
        "inputs": [inputs], "output": output, "storage_options": options or {},
        "clips": {"clip_seconds": 1.0}, "sampling": {"frames_per_clip": 2},
        "tasks": [{"task": "classify", "weights_path": weights, "top_k": 2}],
        "retry": {"attempts": 8, "initial_backoff_s": 0.05, "max_backoff_s": 0.5},
    }


@pytest.fixture(scope="module")
def s3_run(ray_session, s3_endpoint, bucket, mobilenet_weights: str):
    """The job from s3:// to s3:// with the checkpoint on S3 too, without faults."""
    _, options = s3_endpoint
    bucket.put_file(mobilenet_weights, "vb-test/models/mobilenet_v2.pth")
    return vidbatch.run(job("s3://vb-test/archive/", "s3://vb-test/out", "s3://vb-test/models/mobilenet_v2.pth", options))


def test_s3_in_s3_out_equals_local(s3_run, s3_endpoint, bucket, video_dir: Path, mobilenet_weights: str, tmp_path: Path):
    _, options = s3_endpoint
    remote = s3_run
    local = vidbatch.run(job(str(video_dir), str(tmp_path / "out"), mobilenet_weights))
    assert remote.counts.clips == local.counts.clips == 10
    assert (remote.counts.ok, remote.counts.failed) == (local.counts.ok, local.counts.failed) == (3, 1)
    assert_same_rows(clip_rows("s3://vb-test/out", options), clip_rows(str(tmp_path / "out")))

    manifest = bucket.cat_file(f"vb-test/out/runs/{remote.run_id}.json").decode()
    assert "testing" not in manifest and json.loads(manifest)["config"]["storage_options"]["secret"] == "***"
    assert bucket.ls("vb-test/out/clips/_delta_log")


def test_transient_faults_are_retried(s3_run, s3_endpoint, bucket, mobilenet_weights: str):
    url, options = s3_endpoint
    proxy = FaultProxy(int(url.rsplit(":", 1)[1]), every=7)
    try:
        faulty = {**options, "endpoint_url": proxy.url, "config_kwargs": {"retries": {"max_attempts": 1}}}
        summary = vidbatch.run(job("s3://vb-test/archive/", "s3://vb-test/out-faults", mobilenet_weights, faulty))
    finally:
        proxy.stop()
    assert proxy.injected["503"] > 0 and proxy.injected["reset"] > 0
    assert (summary.counts.ok, summary.counts.failed, summary.counts.clips) == (3, 1, 10)
    assert_same_rows(clip_rows("s3://vb-test/out-faults", options), clip_rows("s3://vb-test/out", options))


def test_search_index_on_s3(s3_run, s3_endpoint):
    """The run committed an index next to its tables on S3; a search copies it down and maps it, and agrees with
    the exact search streamed from the S3 files."""
    from vidbatch.read.search import SearchQuery, run_search

    _, options = s3_endpoint
    clip_id = read_table("s3://vb-test/out", "clips", options)["clip_id"][3].as_py()
    indexed = run_search("s3://vb-test/out", SearchQuery(like=clip_id), 4, storage_options=options)
    exact = run_search("s3://vb-test/out", SearchQuery(like=clip_id), 4, storage_options=options, exact=True)
    assert (indexed.method, exact.method) == ("index", "exact")
    for result in (indexed, exact):  # the clip itself comes first, or tied with clips whose frames equal its own
        top = result.hits[0]["similarity"]
        assert clip_id in [h["clip_id"] for h in result.hits if h["similarity"] >= top - 2e-3], result.hits
    assert [h["similarity"] for h in indexed.hits] == pytest.approx([h["similarity"] for h in exact.hits], abs=2e-3)


def test_optimize_and_vacuum_on_s3(s3_run, s3_endpoint):
    from vidbatch.store.maintenance import optimize_output, vacuum_output

    _, options = s3_endpoint
    before = clip_rows("s3://vb-test/out", options)
    metrics = optimize_output("s3://vb-test/out", options, ["video_id"])
    assert "clips" in metrics
    removed = vacuum_output("s3://vb-test/out", options, retain_hours=0, dry_run=False)
    assert removed["clips"]  # the pre-compaction files
    assert_same_rows(clip_rows("s3://vb-test/out", options), before)
    from vidbatch.read.search import SearchQuery, run_search

    clip_id = read_table("s3://vb-test/out", "clips", options)["clip_id"][0].as_py()  # optimize re-indexed it
    assert run_search("s3://vb-test/out", SearchQuery(like=clip_id), 2, storage_options=options).method == "index"
