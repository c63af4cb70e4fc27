"""Fault injection with real Ray: mid-run, the process of an inference actor, then of a decode task, is SIGKILLed.
Ray restarts the actor and retries its batch (max_restarts, max_task_retries) or runs the task again (max_retries),
the driver stages each clip once, and the run ends with exactly the rows of an undisturbed run.

Only processes of this test's own Ray (descendants of the test process) are ever signalled: other Ray sessions on
the machine are left alone."""
from __future__ import annotations

import glob
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from videos import make_video

import vidbatch
from vidbatch.store.committed import read_table

pytestmark = pytest.mark.e2e

ACTOR_TITLE = "ray::MapWorker(MapBatches(ClipInferenceActor))"
DECODE_TITLE = "ray::MapBatches(DecodeStage)"


@pytest.fixture(scope="module")
def job(tmp_path_factory, mobilenet_weights: str) -> dict:
    archive = tmp_path_factory.mktemp("faults-archive")
    for i in range(4):
        make_video(archive / f"v{i}.mp4", seconds=6.0, fps=10, gop=10)
    return {
        "inputs": [str(archive)], "clips": {"clip_seconds": 1.0}, "sampling": {"frames_per_clip": 4},
        "decode": {"unit_seconds": 1.0}, "tasks": [{"task": "classify", "weights_path": mobilenet_weights, "top_k": 3}],
        "inference": {"batch_size": 8}, "ray": {"progress_bars": False},
    }


def committed_rows(out: Path) -> list[dict]:
    return sorted(read_table(str(out), "clips").to_pylist(), key=lambda r: r["clip_id"])


@pytest.fixture(scope="module")
def undisturbed(ray_session, job, tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("faults-baseline") / "out"
    assert vidbatch.run({**job, "output": str(out)}).counts.clips == 24
    return committed_rows(out)


def _parent(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rindex(")") + 2 :].split()[1])  # after "pid (comm) state": the parent's pid


def our_ray_processes(title: str) -> list[int]:
    """Pids of this process's own Ray workers whose process title starts with `title`."""
    me, found = os.getpid(), []
    for path in glob.glob("/proc/[0-9]*/cmdline"):
        pid = int(path.split("/")[2])
        try:
            if not Path(path).read_bytes().startswith(title.encode()):
                continue
            ancestor = pid
            while ancestor > 1 and ancestor != me:
                ancestor = _parent(ancestor)
        except (OSError, ValueError, IndexError):  # the process ended meanwhile
            continue
        if ancestor == me:
            found.append(pid)
    return sorted(found)


class Killer(threading.Thread):
    """Once `after_units` work units are staged, SIGKILL one of our processes titled `title`; then keep noting the
    processes with that title (a restarted actor is a new one)."""

    def __init__(self, out: Path, title: str, after_units: int):
        super().__init__(daemon=True)
        self.out, self.title, self.after_units = out, title, after_units
        self.killed: int | None = None
        self.staged_at_kill = 0
        self.seen_after: set[int] = set()
        self.done = threading.Event()

    def staged(self) -> int:
        return len(glob.glob(str(self.out / "_staging" / "*" / "units" / "*.json")))

    def run(self) -> None:
        while not self.done.is_set():
            pids = our_ray_processes(self.title)
            if self.killed is None and pids and self.staged() >= self.after_units:
                self.staged_at_kill = self.staged()
                os.kill(pids[0], signal.SIGKILL)
                self.killed = pids[0]
            elif self.killed is not None:
                self.seen_after |= set(pids) - {self.killed}
            time.sleep(0.003)


def run_with_a_kill(job: dict, out: Path, title: str, after_units: int) -> tuple[vidbatch.RunSummary, Killer]:
    killer = Killer(out, title, after_units)
    killer.start()
    try:
        summary = vidbatch.run({**job, "output": str(out)})
    finally:
        killer.done.set()
        killer.join()
    return summary, killer


def assert_same_rows(out: Path, undisturbed: list[dict]) -> None:
    rows = committed_rows(out)
    assert [r["clip_id"] for r in rows] == [r["clip_id"] for r in undisturbed]  # nothing lost, nothing twice
    for got, want in zip(rows, undisturbed):
        assert got["frame_times_s"] == want["frame_times_s"] and got["labels"] == want["labels"]
        assert got["scores"] == pytest.approx(want["scores"], abs=1e-5)
        assert got["embedding"] == pytest.approx(want["embedding"], abs=1e-5)


def test_a_killed_inference_actor_is_restarted_and_the_rows_are_unchanged(ray_session, job, undisturbed, tmp_path: Path):
    summary, killer = run_with_a_kill(job, tmp_path / "out", ACTOR_TITLE, after_units=3)
    assert killer.killed is not None, "no inference actor to kill"
    assert 3 <= killer.staged_at_kill < 24  # mid-run
    assert killer.seen_after, "no new actor process after the kill"
    assert summary.exit_code == 0 and summary.counts.clips == 24 and summary.counts.errors == 0
    assert_same_rows(tmp_path / "out", undisturbed)


def test_a_killed_decode_task_runs_again_and_the_rows_are_unchanged(ray_session, job, undisturbed, tmp_path: Path):
    # decode runs ahead of inference (all 24 tasks may finish before the first unit is staged): kill it early
    summary, killer = run_with_a_kill(job, tmp_path / "out", DECODE_TITLE, after_units=0)
    assert killer.killed is not None, "no decode task to kill"
    assert killer.staged_at_kill < 24
    assert summary.exit_code == 0 and summary.counts.clips == 24 and summary.counts.errors == 0
    assert_same_rows(tmp_path / "out", undisturbed)
