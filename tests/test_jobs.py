"""The nightly entrypoint submitted through the Ray Jobs API to a real Ray head on 127.0.0.1 (`ray start --head`),
exactly as `ray job submit --working-dir . -- python jobs/nightly.py --config ...` does."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from s3server import free_port

from vidbatch.store.committed import read_table

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).parents[1]
RAY = str(Path(sys.executable).parent / "ray")


@pytest.fixture(scope="module")
def ray_head():
    """A Ray head in its own process group and temp dir, so stopping it touches no other Ray on the machine."""
    port, dashboard = free_port(), free_port()
    temp_dir = tempfile.mkdtemp(prefix="vbray-", dir="/tmp")
    proc = subprocess.Popen(
        [RAY, "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2",
         "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}",
         f"--temp-dir={temp_dir}", "--disable-usage-stats",
         # every port of its own: another Ray on the machine (a user's, a parallel test run) holds the defaults
         f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}",
         f"--metrics-export-port={free_port()}", f"--runtime-env-agent-port={free_port()}",
         f"--node-manager-port={free_port()}", f"--object-manager-port={free_port()}"],
        env={**os.environ, "RAY_AUTH_MODE": "disabled"}, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    from ray.job_submission import JobSubmissionClient

    url, deadline = f"http://127.0.0.1:{dashboard}", time.time() + 180
    while True:
        try:
            client = JobSubmissionClient(url)
            client.list_jobs()
            break
        except Exception:
            assert proc.poll() is None and time.time() < deadline, "ray head did not come up"
            time.sleep(1)
    yield client
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


def submit_and_wait(client, entrypoint: str) -> tuple[str, str]:
    from ray.job_submission import JobStatus

    runtime_env = {"working_dir": str(ROOT), "excludes": [".venv/", ".git/", "demo-out/", "bench-out/"],
                   "env_vars": {"RAY_AUTH_MODE": "disabled"}}
    deadline = time.time() + 120
    while True:  # the head answers before its job agent is up: "No available agent to submit job"
        try:
            job_id = client.submit_job(entrypoint=entrypoint, runtime_env=runtime_env)
            break
        except RuntimeError as e:
            assert "No available agent" in str(e) and time.time() < deadline, e
            time.sleep(2)
    deadline = time.time() + 400
    while (status := client.get_job_status(job_id)) not in {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}:
        assert time.time() < deadline, client.get_job_logs(job_id)
        time.sleep(1)
    return status, client.get_job_logs(job_id)


def test_nightly_job_through_the_jobs_api(ray_head, video_dir: Path, tmp_path: Path):
    out = tmp_path / "out"
    config = tmp_path / "nightly.yaml"
    config.write_text(yaml.safe_dump({
        "inputs": [str(video_dir / "a.mp4"), str(video_dir / "nested")], "output": str(out), "tasks": [],
        "clips": {"clip_seconds": 1.0}, "ray": {"progress_bars": False},
    }))
    entrypoint = f"{sys.executable} jobs/nightly.py --config {config}"
    status, logs = submit_and_wait(ray_head, entrypoint)
    assert status == "SUCCEEDED", logs
    assert "2 new, 0 changed, 0 skipped" in logs
    clips = read_table(str(out), "clips")
    assert sorted({Path(u).name for u in clips["video_uri"].to_pylist()}) == ["a.mp4", "c.mp4"]
    assert clips.num_rows == 5

    status, logs = submit_and_wait(ray_head, entrypoint)  # the next night: nothing new
    assert status == "SUCCEEDED" and "0 new, 0 changed, 2 skipped" in logs, logs
