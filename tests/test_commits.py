"""Output storage, staging and Delta commits without Ray: atomic writes, idempotent commits, replacement by predicate,
concurrent writers, leases, resumable runs, retries."""
from __future__ import annotations

import multiprocessing
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable

from vidbatch.config import RetryConfig
from vidbatch.core.retry import call, is_transient
from vidbatch.core.storage import OutputStore
from vidbatch.store.commits import (
    UnitOutcome,
    app_id_for,
    find_resumable,
    next_sequence,
    record_unit,
    stage_intent,
    staged_units,
)
from vidbatch.store.committed import check_layout
from vidbatch.store.delta import (
    OutputLayoutError,
    commit_table,
    delta_storage_options,
    in_predicate,
)
from vidbatch.store.lease import LeaseHeld, acquire


def test_parquet_writes_are_atomic_and_deterministic(tmp_path: Path):
    store = OutputStore(str(tmp_path))
    table = pa.table({"x": [1, 2, 3]})
    store.write_parquet("t/a.parquet", table)
    first = (tmp_path / "t/a.parquet").read_bytes()
    store.write_parquet("t/a.parquet", table)
    assert (tmp_path / "t/a.parquet").read_bytes() == first  # a rewrite by a resumed run changes nothing
    assert os.listdir(tmp_path / "t") == ["a.parquet"]  # no temporary file left behind


def test_a_staged_run_of_the_same_job_is_resumable_until_its_staging_is_removed(tmp_path: Path):
    store = OutputStore(str(tmp_path))
    stage_intent(store, "r1", "job-a", "2026-11-22", 1)
    outcome = UnitOutcome(unit_key="u1", video_id="v", file="_staging/r1/units/u1.parquet", clips=3, sampled_frames=12)
    record_unit(store, "r1", outcome)
    assert find_resumable(store, "job-b") is None
    assert find_resumable(store, "job-a") == {"run_id": "r1", "job_key": "job-a", "dt": "2026-11-22", "seq": 1}
    assert staged_units(store, "r1") == {"u1": outcome}
    store.remove_tree("_staging/r1")
    assert find_resumable(store, "job-a") is None


def test_the_next_run_of_a_job_gets_the_next_sequence_number(tmp_path: Path):
    out = str(tmp_path)
    assert next_sequence(out, None, "job") == 1
    commit_table(out, "videos", pa.table({"x": [1]}), app_id=app_id_for("job"), seq=1, options=None)
    commit_table(out, "errors", pa.table({"x": [1]}), app_id=app_id_for("job"), seq=2, options=None)
    assert next_sequence(out, None, "job") == 3 and next_sequence(out, None, "other") == 1


def test_a_table_commit_is_idempotent_per_run_and_replaces_by_predicate(tmp_path: Path):
    out = str(tmp_path)
    rows = pa.table({"video_id": ["a", "a", "b"], "x": [1, 2, 3]})
    v0 = commit_table(out, "clips", rows, app_id="job", seq=1, options=None)
    assert commit_table(out, "clips", rows, app_id="job", seq=1, options=None) == v0  # a resumed run: no second commit
    assert DeltaTable(f"{out}/clips").version() == v0
    v1 = commit_table(out, "clips", pa.table({"video_id": ["a", "c"], "x": [9, 10]}), app_id="job", seq=2,
                      options=None, replace=in_predicate("video_id", ["a", "c"]))
    now = sorted(DeltaTable(f"{out}/clips").to_pyarrow_table().to_pylist(), key=lambda r: r["x"])
    assert now == [{"video_id": "b", "x": 3}, {"video_id": "a", "x": 9}, {"video_id": "c", "x": 10}]
    assert v1 == v0 + 1  # replacement and new rows in one commit
    assert DeltaTable(f"{out}/clips", version=v0).to_pyarrow_table().num_rows == 3  # the earlier version is intact


def test_predicates_quote_their_values():
    assert in_predicate("video_uri", ["it's.mp4", "a.mp4"]) == "video_uri IN ('a.mp4','it''s.mp4')"


def test_an_output_in_the_old_layout_is_refused(tmp_path: Path):
    (tmp_path / "_commits").mkdir()
    with pytest.raises(OutputLayoutError, match="old layout"):
        check_layout(OutputStore(str(tmp_path)))


def test_the_lease_admits_one_run_per_job_and_names_the_holder(tmp_path: Path):
    store = OutputStore(str(tmp_path))
    lease = acquire(store, "job-a", "r1")
    with pytest.raises(LeaseHeld, match=r"run r1 \(pid \d+"):
        acquire(store, "job-a", "r2")
    other = acquire(store, "job-b", "r3")  # another job is not blocked
    lease.release()
    acquire(store, "job-a", "r2").release()
    other.release()


def test_a_dead_holders_lease_is_taken_over(tmp_path: Path):
    store = OutputStore(str(tmp_path))
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    store.write_json("_leases/job-a.json", {"run_id": "killed", "host": socket.gethostname(), "pid": child.pid,
                                             "expires_at": time.time() + 3600})
    acquire(store, "job-a", "r2").release()  # the killed run's lease does not block its resume


def _replace_video(args: tuple) -> None:
    out, options, writer, n, barrier = args
    rows = pa.table({"video_id": ["shared"] * n + [writer] * n, "writer": [writer] * (2 * n)})
    barrier.wait()  # every writer finds no table, then all write at once
    commit_table(out, "clips", rows, app_id=f"job-{writer}", seq=1, options=options,
                 replace=in_predicate("video_id", ["shared", writer]))


def _concurrent_replacements(out: str, options: dict | None) -> list[dict]:
    """Four writers race, starting from no table at all (creating it is part of the race)."""
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager, ctx.Pool(4) as pool:
        barrier = manager.Barrier(4)
        pool.map(_replace_video, [(out, options, f"w{i}", 3, barrier) for i in range(4)])
    return DeltaTable(f"{out}/clips", storage_options=options).to_pyarrow_table().to_pylist()


def _check_no_loss_or_duplicates(rows: list[dict]) -> None:
    shared = [r["writer"] for r in rows if r["video_id"] == "shared"]
    assert len(shared) == 3 and len(set(shared)) == 1  # exactly one writer's rows for the video everyone replaced
    for i in range(4):
        assert sum(r["video_id"] == f"w{i}" for r in rows) == 3  # every writer's own video, once


def test_concurrent_runs_replacing_the_same_video_neither_lose_nor_duplicate_rows(tmp_path: Path):
    _check_no_loss_or_duplicates(_concurrent_replacements(str(tmp_path), None))


@pytest.mark.e2e
def test_concurrent_runs_on_s3_neither_lose_nor_duplicate_rows(s3_endpoint):
    import s3fs

    _, fs_options = s3_endpoint
    s3fs.S3FileSystem(**fs_options).mkdir("vb-concurrent")
    out = "s3://vb-concurrent/out"
    _check_no_loss_or_duplicates(_concurrent_replacements(out, delta_storage_options(out, fs_options)))


def test_delta_options_come_from_the_fsspec_ones():
    fs_options = {"key": "k", "secret": "s", "endpoint_url": "http://127.0.0.1:9000",
                  "client_kwargs": {"region_name": "eu-west-1"}}
    assert delta_storage_options("s3://b/out", fs_options) == {
        "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s", "AWS_ENDPOINT_URL": "http://127.0.0.1:9000",
        "AWS_REGION": "eu-west-1", "AWS_ALLOW_HTTP": "true", "conditional_put": "etag",
    }
    explicit = delta_storage_options("s3://b/out", {}, {"AWS_REGION": "us-west-2"})
    assert explicit["AWS_REGION"] == "us-west-2"
    assert delta_storage_options("/local/out", {}) is None


class SlowDown(Exception):
    def __init__(self) -> None:
        super().__init__("An error occurred (SlowDown) when calling the GetObject operation")
        self.response = {"Error": {"Code": "SlowDown"}, "ResponseMetadata": {"HTTPStatusCode": 503}}


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (SlowDown(), True),
        (ConnectionResetError("Connection reset by peer"), True),
        (TimeoutError(), True),
        (OSError("wrapped"), False),
        (FileNotFoundError("s3://b/missing.mp4"), False),
        (PermissionError("Access Denied"), False),
        (ValueError("moov atom not found"), False),
    ],
)
def test_transient_errors_are_told_apart(exc: Exception, transient: bool):
    assert is_transient(exc) is transient


def test_a_cause_deep_in_the_chain_counts():
    try:
        try:
            raise SlowDown()
        except SlowDown as inner:
            raise OSError("read failed") from inner
    except OSError as outer:
        assert is_transient(outer)


def test_call_retries_transient_failures_only():
    cfg = RetryConfig(attempts=4, initial_backoff_s=0, max_backoff_s=0)
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionResetError("reset")
        return "ok"

    assert call(cfg, flaky) == "ok" and len(calls) == 3

    def missing() -> None:
        calls.append(1)
        raise FileNotFoundError("gone")

    calls.clear()
    with pytest.raises(FileNotFoundError):
        call(cfg, missing)
    assert len(calls) == 1
