"""Exactly-once output under failure: the driver is killed (SIGKILL to its whole process group, Ray included)
at several points, the same command is run again, and the committed clip rows equal an uninterrupted run's."""
from __future__ import annotations

import glob
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from videos import make_video

import vidbatch
from vidbatch.store.committed import read_table

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def job(tmp_path_factory, mobilenet_weights: str) -> tuple[Path, dict]:
    archive = tmp_path_factory.mktemp("resume-archive")
    for i in range(6):
        make_video(archive / f"v{i}.mp4", seconds=6.0, fps=10, gop=10)
    config = {
        "inputs": [str(archive)], "clips": {"clip_seconds": 1.0}, "sampling": {"frames_per_clip": 4},
        "decode": {"unit_seconds": 1.0}, "tasks": [{"task": "classify", "weights_path": mobilenet_weights, "top_k": 3}],
        "inference": {"batch_size": 8}, "ray": {"progress_bars": False, "num_cpus": 2},
    }
    path = archive.parent / "resume-job.yaml"
    path.write_text(yaml.safe_dump(config))
    return path, config


@pytest.fixture(scope="module")
def uninterrupted(ray_session, job, tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("resume-baseline") / "out"
    summary = vidbatch.run({**job[1], "output": str(out)})
    assert summary.counts.clips == 36
    return committed_rows(out)


def committed_rows(out: Path) -> list[dict]:
    rows = read_table(str(out), "clips").to_pylist()
    return sorted(rows, key=lambda r: r["clip_id"])


def command(config: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "vidbatch", "run", "--config", str(config), "-o", str(out), "--show", "0"]


def run_and_kill(cmd: list[str], out: Path, units_done: int) -> int:
    """Start the job and SIGKILL its process group once `units_done` units are staged (0: once the run is staged)."""
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pattern = str(out / "_staging" / "*" / ("intent.json" if units_done == 0 else "units/*.json"))
    deadline = time.time() + 300
    while len(glob.glob(pattern)) < max(1, units_done):
        assert proc.poll() is None, f"the run ended (exit {proc.returncode}) before it could be killed"
        assert time.time() < deadline
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return len(glob.glob(str(out / "_staging" / "*" / "units" / "*.json")))


@pytest.mark.parametrize("units_done", [0, 1, 20])
def test_killed_run_resumes_to_the_same_rows(job, uninterrupted, tmp_path: Path, units_done: int):
    config, _ = job
    out = tmp_path / "out"
    staged = run_and_kill(command(config, out), out, units_done)
    assert not (out / "clips").exists()  # nothing of the killed run is visible to readers

    done = subprocess.run(command(config, out), env={**os.environ, "RAY_AUTH_MODE": "disabled"},
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "(resumed)" in done.stdout
    rows = committed_rows(out)
    assert [r["clip_id"] for r in rows] == [r["clip_id"] for r in uninterrupted]  # no duplicates, nothing missing
    assert len({r["run_id"] for r in rows}) == 1  # the resumed run kept the killed run's id
    for got, want in zip(rows, uninterrupted):
        assert got["frame_times_s"] == want["frame_times_s"] and got["labels"] == want["labels"]
        assert got["scores"] == pytest.approx(want["scores"], abs=1e-5)
    (manifest,) = (out / "runs").glob("*.json")
    summary = yaml.safe_load(manifest.read_text())
    assert summary["resumed"] and summary["counts"]["resumed_units"] >= staged >= units_done


def test_crash_between_staging_and_commit_resumes_without_decoding(ray_session, job, uninterrupted, tmp_path: Path, monkeypatch):
    out = tmp_path / "out"
    cfg = {**job[1], "output": str(out)}

    def fail(*args, **kwargs):
        raise OSError("store went away just before the commit")

    monkeypatch.setattr("vidbatch.pipeline.publish", fail)
    with pytest.raises(OSError):
        vidbatch.run(cfg)
    assert not (out / "clips").exists()
    monkeypatch.undo()
    summary = vidbatch.run(cfg)
    assert summary.resumed and summary.counts.resumed_units == 36 and summary.counts.clips == 36
    rows = committed_rows(out)
    assert [r["clip_id"] for r in rows] == [r["clip_id"] for r in uninterrupted]


def test_crash_between_two_table_commits_commits_each_table_once(ray_session, job, uninterrupted, tmp_path: Path, monkeypatch):
    """clips landed, the ledger did not: the resumed run finds its transaction in clips' log and skips it."""
    from deltalake import DeltaTable

    import vidbatch.store.publish as publish

    out = tmp_path / "out"
    cfg = {**job[1], "output": str(out)}
    real = publish.commit_table

    def fail_at_ledger(out_, name, *args, **kwargs):
        if name == "ledger":
            raise OSError("killed between two table commits")
        return real(out_, name, *args, **kwargs)

    monkeypatch.setattr(publish, "commit_table", fail_at_ledger)
    with pytest.raises(OSError):
        vidbatch.run(cfg)
    clips_version = DeltaTable(str(out / "clips")).version()
    monkeypatch.undo()
    summary = vidbatch.run(cfg)
    assert summary.resumed and summary.table_versions["clips"] == clips_version  # not committed a second time
    assert DeltaTable(str(out / "clips")).version() == clips_version
    assert [r["clip_id"] for r in committed_rows(out)] == [r["clip_id"] for r in uninterrupted]
    assert DeltaTable(str(out / "ledger")).to_pyarrow_table().num_rows == 6  # one row per video, committed once
