"""Driver memory and time at archive scale (issue 13), no video decoded.

(a) plan: V videos x C clips planned by the real probe tasks (Ray) from made-up stream facts (the probe step
    returns a VideoInfo instead of opening a file; planning, staging and what reaches the driver are the job's own
    code), then what the driver builds before decoding: the slices of units to decode and the unit sink.
    Prints the driver's peak RSS, against its RSS once Ray is up (the same run's baseline).
    goal: driver peak RSS <= 500 MB at 1M clips.
(b) nightly: N empty files listed, and a ledger (Delta) that has seen every one of them ok; the whole
    `vidbatch run --incremental` command, which finds nothing to do (and must not start Ray), timed against the
    same interpreter's start-up with `import vidbatch.cli`. goal: <= 60 s at 100k videos.

  python benchmarks/plan_scale.py --videos 20000 --clips 50 --nightly 100000
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml
from deltalake import write_deltalake

from vidbatch.config import ClipConfig, IncrementalConfig, InputConfig, SamplingConfig
from vidbatch.core.deadline import Deadline
from vidbatch.core.schema import clips_schema
from vidbatch.core.storage import OutputStore
from vidbatch.job import load_config
from vidbatch.plan.listing import VideoSource, list_videos
from vidbatch.plan.prepare import PrepareStage
from vidbatch.plan.probe import VideoInfo
from vidbatch.progress import RunProgress
from vidbatch.store.fingerprint import pipeline_fingerprint, pipeline_identity
from vidbatch.store.ledger import ledger_table
from vidbatch.store.plans import PlanStage, unit_slices
from vidbatch.store.sink import UnitSink

GOAL_RSS_MB = 500.0
GOAL_NIGHTLY_S = 60.0


def rss_mb() -> float:
    """This process's peak resident set so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass(frozen=True)
class MadeUpProbe(PrepareStage):
    """Every video as a 720p h264 stream of `seconds` (what probing a real file would return)."""

    seconds: float = 100.0

    def probe(self, source: VideoSource, deadline: Deadline) -> VideoInfo:
        return VideoInfo(self.seconds, 25.0, round(self.seconds * 25), 1280, 720, "h264", "yuv420p", 0, True, 0.0, 2.0)


def plan(videos: int, clips: int, tmp: str) -> bool:
    import ray

    from vidbatch.pipeline import plan_videos

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    base = rss_mb()
    clip_cfg, sampling = ClipConfig(clip_seconds=2.0), SamplingConfig(frames_per_clip=8)
    probe = MadeUpProbe(clip_cfg, sampling, 60.0, seconds=clips * clip_cfg.clip_seconds)
    sources = [VideoSource(f"/archive/d{i // 1000:03d}/v{i:06d}.mp4", 10_000_000 + i, "1767225600.0") for i in range(videos)]
    out = f"{tmp}/plan-out"
    t = time.perf_counter()
    plans = plan_videos(PlanStage(probe, out, "bench"), sources, RunProgress())
    todo = unit_slices(plans, "bench-pipeline", set(), 200)
    sink = UnitSink(OutputStore(out), "bench", "bench-pipeline", clips_schema([]), plans, todo.done, todo.units)
    wall = time.perf_counter() - t
    peak = rss_mb()
    staged = sum(f.stat().st_size for f in Path(out, "_staging/bench/plans").iterdir()) / 2**20
    ray.shutdown()
    print(f"(a) plan: {videos} videos x {clips} clips = {todo.clips} clips in {todo.units} units "
          f"({len(todo.slices)} decode slices), planned and staged in {wall:.1f} s ({staged:.0f} MB of plan files)")
    print(f"    driver RSS with Ray up {base:.0f} MB, peak after planning {peak:.0f} MB: planning added "
          f"{peak - base:.0f} MB = {(peak - base) * 2**20 / todo.clips:.0f} B per clip; peak / Ray-up = {peak / base:.2f}")
    met = peak <= GOAL_RSS_MB
    print(f"    goal: driver peak RSS <= {GOAL_RSS_MB:.0f} MB at {todo.clips} clips -> {'MET' if met else 'NOT MET'} "
          f"({peak:.0f} MB)")
    assert sink.unfinished() == todo.units
    return met


def _timed(cmd: list[str]) -> tuple[float, float, str]:
    """(wall s, peak RSS MB, stdout) of a child process."""
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "RAY_AUTH_MODE": "disabled"})
    out = proc.stdout.read()  # type: ignore[union-attr]
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{cmd} failed ({proc.returncode}):\n{out}")
    return time.perf_counter() - t, usage.ru_maxrss / 1024, out


def nightly(n: int, tmp: str) -> bool:
    root = Path(tmp, "nightly")
    for i in range(n):
        d = root / "archive" / f"d{i // 1000:03d}"
        if i % 1000 == 0:
            d.mkdir(parents=True)
        (d / f"v{i:06d}.mp4").touch()
    job = root / "job.yaml"
    job.write_text(yaml.safe_dump({"inputs": [str(root / "archive")], "output": str(root / "out"), "tasks": [],
                                   "incremental": {"enabled": True}}))
    cfg = load_config(job)
    sources, errors, _ = list_videos(cfg.inputs, InputConfig())
    assert len(sources) == n and not errors
    pipeline = pipeline_fingerprint(pipeline_identity(cfg))
    seen = ledger_table([(s, "new", True) for s in sources], [], {}, pipeline, IncrementalConfig(enabled=True), "seed",
                        "2026-01-01T00:00:00+00:00")
    write_deltalake(str(root / "out" / "ledger"), seen, mode="overwrite")
    start_s, start_mb, _ = _timed([sys.executable, "-c", "import vidbatch.cli"])
    wall, mb, out = _timed([sys.executable, "-m", "vidbatch", "run", "--config", str(job)])
    line = out.strip().splitlines()[-1]
    assert "Ray not started" in line and f"{n} skipped" in line, out
    print(f"(b) nightly over {n} unchanged videos: `vidbatch run --incremental` {wall:.1f} s, peak RSS {mb:.0f} MB; "
          f"interpreter start-up (import vidbatch.cli) {start_s:.1f} s, {start_mb:.0f} MB; run / start-up = "
          f"{wall / start_s:.2f}, {(wall - start_s) * 1e6 / n:.0f} us per video beyond start-up")
    print(f"    it printed: {line}")
    met = wall <= GOAL_NIGHTLY_S
    print(f"    goal: nightly skip of {n} videos <= {GOAL_NIGHTLY_S:.0f} s -> {'MET' if met else 'NOT MET'} ({wall:.1f} s)")
    return met


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", type=int, default=20_000, help="(a) videos to plan; 0 skips (a)")
    ap.add_argument("--clips", type=int, default=50, help="(a) 2-s clips per video")
    ap.add_argument("--nightly", type=int, default=100_000, help="(b) listed, unchanged videos; 0 skips (b)")
    args = ap.parse_args(argv)
    met = []
    with tempfile.TemporaryDirectory(prefix="vidbatch-plan-scale-") as tmp:
        if args.videos:  # first: RSS is a high-water mark, and (b) builds its listing and ledger in this process
            met.append(plan(args.videos, args.clips, tmp))
        if args.nightly:  # its figures are the child process's own
            met.append(nightly(args.nightly, tmp))
    return 0 if all(met) else 1


if __name__ == "__main__":
    sys.exit(main())
