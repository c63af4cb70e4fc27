"""Output storage, staging and commits without Ray: atomic writes, what readers see, resumable runs, retries."""
from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pytest

from vidbatch.config import RetryConfig
from vidbatch.core.retry import call, is_transient
from vidbatch.core.storage import OutputStore
from vidbatch.store.commits import (
    UnitOutcome,
    commit,
    find_resumable,
    record_unit,
    stage_intent,
    staged_units,
)
from vidbatch.store.committed import live_files, table_files


def test_parquet_writes_are_atomic_and_deterministic(tmp_path: Path):
    store = OutputStore(str(tmp_path))
    table = pa.table({"x": [1, 2, 3]})
    store.write_parquet("t/a.parquet", table)
    first = (tmp_path / "t/a.parquet").read_bytes()
    store.write_parquet("t/a.parquet", table)
    assert (tmp_path / "t/a.parquet").read_bytes() == first  # a rewrite by a resumed run changes nothing
    assert os.listdir(tmp_path / "t") == ["a.parquet"]  # no temporary file left behind


def test_readers_see_only_committed_files_and_replacements_apply_in_order(tmp_path: Path):
    store = OutputStore(str(tmp_path))
    for name in ("c1", "c2", "c3", "staged"):
        store.write_parquet(f"clips/{name}.parquet", pa.table({"x": [1]}))
    commit(store, "r1", {"clips": ["clips/c1.parquet", "clips/c2.parquet"]}, [], {})
    assert [Path(f).name for f in table_files(str(tmp_path), "clips")] == ["c1.parquet", "c2.parquet"]
    commit(store, "r2", {"clips": ["clips/c3.parquet", "clips/c2.parquet"]}, ["clips/c1.parquet", "clips/c2.parquet"], {})
    assert sorted(Path(f).name for f in table_files(str(tmp_path), "clips")) == ["c2.parquet", "c3.parquet"]
    assert table_files(str(tmp_path), "videos") == []
    records = [{"tables": {"t": ["a"]}}, {"tables": {"t": ["b"]}, "replaced": ["a"]}, {"tables": {"t": ["a"]}}]
    assert live_files(records) == {"t": ["b", "a"]}


def test_a_staged_run_of_the_same_job_is_resumable_until_committed(tmp_path: Path):
    store = OutputStore(str(tmp_path))
    stage_intent(store, "r1", "job-a", "2026-11-22")
    outcome = UnitOutcome(unit_key="u1", video_id="v", file="clips/u1.parquet", clips=3, sampled_frames=12)
    record_unit(store, "r1", outcome)
    assert find_resumable(store, "job-b") is None
    assert find_resumable(store, "job-a")["run_id"] == "r1"
    assert staged_units(store, "r1") == {"u1": outcome}
    commit(store, "r1", {"clips": ["clips/u1.parquet"]}, [], {})
    assert find_resumable(store, "job-a") is None
    assert not (tmp_path / "_staging" / "r1").exists()


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
