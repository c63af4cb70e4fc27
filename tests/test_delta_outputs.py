"""The output tables as Delta Lake: what a review reproduced breaking under the hand-built commit log, now tests.

Re-runs never touch what an earlier version holds, a failed re-process keeps the good rows, concurrent runs
neither lose nor double rows, outside tools read exactly what `vidbatch query` reads, and vacuum/optimize work.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import polars as pl
import pytest
from deltalake import DeltaTable
from typer.testing import CliRunner
from videos import make_video

import vidbatch
from vidbatch.cli import app
from vidbatch.core.storage import OutputStore
from vidbatch.read.query import run_query
from vidbatch.store.committed import read_table
from vidbatch.store.lease import acquire

pytestmark = pytest.mark.e2e

SQL = "SELECT clip_id, video_id, run_id FROM clips ORDER BY clip_id"


def job(inputs: list[str], out: Path, **extra) -> dict:
    cfg = {"inputs": inputs, "output": str(out), "tasks": [], "clips": {"clip_seconds": 1.0},
           "sampling": {"frames_per_clip": 2}, "ray": {"progress_bars": False}}
    return {**cfg, **extra}


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    root = tmp_path / "archive"
    root.mkdir()
    make_video(root / "a.mp4", seconds=3.0, fps=10)
    make_video(root / "b.mp4", seconds=2.0, fps=10)
    return root


def test_a_same_day_rerun_leaves_the_earlier_version_as_it_was(ray_session, archive: Path, tmp_path: Path):
    out = tmp_path / "out"
    first = vidbatch.run(job([str(archive)], out, run_id="first"))
    before = run_query(str(out), SQL).to_pylist()
    assert len(before) == 5 and {r["run_id"] for r in before} == {"first"}
    second = vidbatch.run(job([str(archive / "a.mp4")], out, run_id="second", sampling={"frames_per_clip": 3}))
    assert second.table_versions["clips"] > first.table_versions["clips"]
    now = run_query(str(out), SQL).to_pylist()
    assert len(now) == 5 and sorted(r["run_id"] for r in now) == ["first"] * 2 + ["second"] * 3  # a.mp4 replaced
    result = CliRunner().invoke(app, ["query", str(out), SQL, "--as-of", "first", "-f", "json"])
    assert result.exit_code == 0, result.output
    assert run_query(str(out), SQL, as_of="first").to_pylist() == before  # time travel: run 1's view, unchanged
    assert CliRunner().invoke(app, ["query", str(out), SQL, "--as-of", "nope"]).exit_code == 2


def test_a_failed_reprocess_keeps_the_videos_rows(ray_session, archive: Path, tmp_path: Path):
    out = tmp_path / "out"
    vidbatch.run(job([str(archive)], out))
    good = read_table(str(out), "clips").to_pylist()
    (archive / "a.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(3000))  # now unreadable
    summary = vidbatch.run(job([str(archive)], out))
    assert summary.counts.failed == 1 and summary.exit_code == 3
    kept = read_table(str(out), "clips").to_pylist()
    assert sorted(r["clip_id"] for r in kept) == sorted(r["clip_id"] for r in good)  # a.mp4's 3 clips still there
    ledger = {Path(r["video_uri"]).name: r["status"] for r in read_table(str(out), "ledger").to_pylist()}
    assert ledger == {"a.mp4": "failed", "b.mp4": "ok"}
    errors = read_table(str(out), "errors").to_pylist()
    assert [Path(e["video_uri"]).name for e in errors] == ["a.mp4"]


@pytest.mark.parametrize("run_id", ["..", ".", "-x", "a/b"])
def test_run_ids_that_are_not_plain_names_are_refused(run_id: str, archive: Path, tmp_path: Path):
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["run", str(archive), "-o", str(out), "--run-id", run_id])
    assert result.exit_code == 2 and "run_id" in result.output
    assert not out.exists()


def test_a_second_run_of_the_same_job_is_refused_while_the_first_holds_the_lease(ray_session, archive: Path, tmp_path: Path):
    out = tmp_path / "out"
    cfg = job([str(archive)], out)
    from vidbatch.job import validate_config
    from vidbatch.store.fingerprint import (
        job_key,
        pipeline_fingerprint,
        pipeline_identity,
    )

    config = validate_config(cfg)
    lease = acquire(OutputStore(str(out)), job_key(config, pipeline_fingerprint(pipeline_identity(config))), "holder-run")
    try:
        result = CliRunner().invoke(app, ["run", str(archive), "-o", str(out), "--set", "tasks=[]",
                                          "--set", "clips.clip_seconds=1.0", "--set", "sampling.frames_per_clip=2"])
        assert result.exit_code == 2, result.output
        assert "run holder-run" in result.output and "same job" in result.output
    finally:
        lease.release()
    assert vidbatch.run(cfg).exit_code == 0  # released: the job runs


def test_outside_readers_see_exactly_what_query_sees(kinds_output):
    import pyarrow.compute as pc
    import ray.data

    out = str(kinds_output[0])
    expected = run_query(out, "SELECT clip_id, labels FROM clips ORDER BY clip_id").to_pylist()

    polars_rows = pl.read_delta(f"{out}/clips").select("clip_id", "labels").sort("clip_id").to_dicts()
    dataset = DeltaTable(f"{out}/clips").to_pyarrow_dataset()
    duck_rows = duckdb.connect().register("clips", dataset).sql(
        "SELECT clip_id, labels FROM clips ORDER BY clip_id").to_arrow_table().to_pylist()
    arrow = dataset.to_table(columns=["clip_id", "labels"])
    arrow_rows = arrow.take(pc.sort_indices(arrow, [("clip_id", "ascending")])).to_pylist()
    ray_rows = sorted(ray.data.read_delta(f"{out}/clips").select_columns(["clip_id", "labels"]).take_all(),
                      key=lambda r: r["clip_id"])
    ray_rows = [{"clip_id": r["clip_id"], "labels": list(r["labels"])} for r in ray_rows]
    assert polars_rows == duck_rows == arrow_rows == ray_rows == expected
    assert len(expected) == kinds_output[3].counts.clips


def test_concurrent_runs_into_one_output_leave_no_duplicates(archive: Path, tmp_path: Path):
    """Two processes, each with its own Ray, overlapping inputs (different jobs), committing at about the same time."""
    out = tmp_path / "out"
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    common = ["-o", str(out), "--show", "0", "--set", "tasks=[]", "--set", "clips.clip_seconds=1.0",
              "--set", "sampling.frames_per_clip=2", "--set", "ray.num_cpus=1"]
    runs = [subprocess.Popen([sys.executable, "-m", "vidbatch", "run", *inputs, *common], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for inputs in ([str(archive)], [str(archive / "a.mp4")])]
    outputs = [p.communicate(timeout=300)[0] for p in runs]
    assert [p.returncode for p in runs] == [0, 0], outputs
    rows = read_table(str(out), "clips").to_pylist()
    ids = [r["clip_id"] for r in rows]
    assert len(ids) == len(set(ids)) == 5  # a.mp4 once (3 clips, from whichever run committed last), b.mp4 once
    ledger = read_table(str(out), "ledger").to_pylist()
    assert sorted(Path(r["video_uri"]).name for r in ledger) == ["a.mp4", "b.mp4"]


def test_vacuum_and_optimize(ray_session, archive: Path, tmp_path: Path):
    out = tmp_path / "out"
    for frames in (2, 3, 4):  # three runs: each replaces both videos' rows, leaving unreferenced files behind
        vidbatch.run(job([str(archive)], out, sampling={"frames_per_clip": frames}))
    rows = run_query(str(out), SQL).to_pylist()
    runner = CliRunner()
    result = runner.invoke(app, ["optimize", str(out), "--zorder"])
    assert result.exit_code == 0 and "clips:" in result.output, result.output
    assert run_query(str(out), SQL).to_pylist() == rows
    files_before = len(list((out / "clips").glob("*.parquet")))
    (out / "_staging" / "abandoned").mkdir(parents=True)
    (out / "_staging" / "abandoned" / "intent.json").write_text("{}")
    os.utime(out / "_staging" / "abandoned" / "intent.json", (time.time() - 7200, time.time() - 7200))
    dry = runner.invoke(app, ["vacuum", str(out), "--retain-hours", "0", "--dry-run"])
    assert dry.exit_code == 0 and "would remove" in dry.output
    assert len(list((out / "clips").glob("*.parquet"))) == files_before and (out / "_staging" / "abandoned").exists()
    done = runner.invoke(app, ["vacuum", str(out), "--retain-hours", "0"])
    assert done.exit_code == 0, done.output
    assert len(list((out / "clips").glob("*.parquet"))) < files_before
    assert not (out / "_staging" / "abandoned").exists()
    assert run_query(str(out), SQL).to_pylist() == rows  # the current view is untouched


def test_an_output_in_the_old_layout_is_refused(archive: Path, tmp_path: Path):
    out = tmp_path / "old"
    (out / "_commits").mkdir(parents=True)
    result = CliRunner().invoke(app, ["run", str(archive), "-o", str(out)])
    assert result.exit_code == 2 and "old layout" in result.output
