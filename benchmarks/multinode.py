"""P6: throughput of a two-node Ray cluster (one CPU each) against one node (one CPU), same files, same run.

    RAY_AUTH_MODE=disabled .venv/bin/python benchmarks/multinode.py

Both clusters are real: `ray start --head` plus (for two nodes) `ray start --address`, on loopback, each node with
`--num-cpus 1` and a resource label of its own (tests/raycluster.py). The job, decode only (`tasks: []`: on a
one-CPU node an inference actor would hold the node's only CPU), runs through `vidbatch run --address` in its own
process, as a user's would. Before the timed runs an untimed warm-up run on two files starts the nodes' worker
processes. Figures from each run's manifest: source seconds per second of pipeline_s (probe, decode, writing), the
stream phase alone (decode), and the decode tasks per node (`nodes`).

On a machine with two cores, two one-CPU nodes use both, and the driver, the GCS and the raylets compete with
them for those cores; the ratio says what this machine gives, not what two machines would.

Goal checked: two nodes' throughput >= 1.8 x one node's.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import yaml

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(Path(__file__).parent))

from decode_throughput import ensure_videos  # noqa: E402
from raycluster import LocalCluster  # noqa: E402

GOAL_RATIO = 1.8


def run_job(paths: list[Path], address: str, work: Path) -> dict[str, Any]:
    """One `vidbatch run --address` over the files; its manifest."""
    out = Path(tempfile.mkdtemp(prefix="p6-", dir=work))
    config = out.with_suffix(".yaml")
    config.write_text(yaml.safe_dump({
        "inputs": [str(p) for p in paths], "output": str(out), "tasks": [],
        "clips": {"clip_seconds": 2.0}, "sampling": {"frames_per_clip": 8}, "decode": {"unit_seconds": 10.0},
        "ray": {"progress_bars": False},
    }))
    t = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "vidbatch", "run", "--config", str(config), "--address", address],
        capture_output=True, text=True, check=False, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    wall = time.perf_counter() - t
    if done.returncode != 0:
        raise SystemExit(done.stdout[-3000:] + done.stderr[-3000:])
    (manifest,) = (out / "runs").glob("*.json")
    return {**json.loads(manifest.read_text()), "cli_wall_s": wall}


def figures(m: dict[str, Any]) -> dict[str, Any]:
    seconds = m["counts"]["source_seconds"]
    return {
        "source_seconds": seconds, "clips": m["counts"]["clips"], "pipeline_s": m["pipeline_s"],
        "stream_s": m["stage_s"].get("stream", 0.0), "cli_wall_s": m["cli_wall_s"],
        "throughput": seconds / m["pipeline_s"], "stream_throughput": seconds / max(m["stage_s"].get("stream", 0.0), 1e-9),
        "decode_tasks_per_node": sorted(n["decode_tasks"] for n in m["nodes"].values()),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # the files of decode_throughput.py's default run (made once, cached): 80 s of 720p, 8 ten-second work units
    ap.add_argument("--videos", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=720)
    ap.add_argument("--preset", default="medium", help="libx264 preset the files are made with (default medium)")
    ap.add_argument("--repeats", type=int, default=1, help="timed runs per cluster; median shown (default 1)")
    ap.add_argument("--json", dest="json_path")
    args = ap.parse_args(argv)
    paths = ensure_videos(SimpleNamespace(
        videos=args.videos, seconds=args.seconds, fps=25, width=args.width, height=args.height, preset=args.preset,
        videos_dir=None,
    ))
    work = Path(tempfile.mkdtemp(prefix="vidbatch-p6-"))
    results: dict[int, list[dict[str, Any]]] = {}
    for nodes in (1, 2):
        t = time.perf_counter()
        with LocalCluster(nodes=nodes, cpus=1, name="ray-p6") as cluster:
            started = time.perf_counter() - t
            run_job(paths[:2], cluster.address, work)  # warm-up: the nodes' worker processes start
            results[nodes] = [figures(run_job(paths, cluster.address, work)) for _ in range(args.repeats)]
        for r in results[nodes]:
            print(f"{nodes} node(s) x 1 CPU: {r['source_seconds']:.0f} s of video, {r['clips']} clips in "
                  f"pipeline_s {r['pipeline_s']:.1f} s (stream {r['stream_s']:.1f} s, CLI wall {r['cli_wall_s']:.1f} s): "
                  f"{r['throughput']:.2f} video-s/s, stream {r['stream_throughput']:.2f} video-s/s, "
                  f"decode tasks per node {r['decode_tasks_per_node']} (cluster start {started:.0f} s)", flush=True)
    med = {n: {k: statistics.median(r[k] for r in rs) for k in ("throughput", "stream_throughput")} for n, rs in results.items()}
    ratio = med[2]["throughput"] / med[1]["throughput"]
    stream_ratio = med[2]["stream_throughput"] / med[1]["stream_throughput"]
    print(f"stream phase (decode) alone: 2 nodes / 1 node = {stream_ratio:.2f}x")
    print(f"goal: 2 one-CPU nodes / 1 one-CPU node throughput = {ratio:.2f}x >= {GOAL_RATIO}x -> "
          f"{'MET' if ratio >= GOAL_RATIO else 'NOT MET'}")
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(results, indent=2))
    return 0 if ratio >= GOAL_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
