"""Every task in one job through the real Ray pipeline: real torchvision architectures (random weights, classify with
its real weights), one decode per clip, typed nested columns DuckDB can query."""
from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from videos import make_video

import vidbatch
from vidbatch.config import TaskConfig
from vidbatch.core.schema import clips_schema, thumbnail_fields
from vidbatch.infer.tasks import task_output_fields
from vidbatch.store.committed import read_table

pytestmark = pytest.mark.e2e


def test_classify_segment_detect_action_in_one_job(ray_session, mobilenet_weights: str, tmp_path: Path):
    (tmp_path / "in").mkdir()
    make_video(tmp_path / "in" / "v.mp4", seconds=2.0, fps=15, width=96, height=64)
    tasks = [
        {"task": "classify", "weights_path": mobilenet_weights, "top_k": 2},
        {"task": "segment", "model": "lraspp_mobilenet_v3_large", "weights": None, "masks": True},
        {"task": "detect", "model": "ssdlite320_mobilenet_v3_large", "weights": None, "score_threshold": 0.0},
        {"task": "action", "model": "r3d_18", "weights": None, "top_k": 3},
    ]
    out = tmp_path / "out"
    summary = vidbatch.run(
        {"inputs": [str(tmp_path / "in")], "output": str(out), "clips": {"clip_seconds": 1.0},
         "sampling": {"frames_per_clip": 2}, "tasks": tasks, "ray": {"progress_bars": False}}
    )
    assert summary.exit_code == 0 and summary.counts.clips == 2 and summary.counts.sampled_frames == 4
    clips = read_table(str(out), "clips")
    expected = clips_schema(task_output_fields([TaskConfig(**t) for t in tasks]) + thumbnail_fields(True))
    assert clips.schema.equals(expected, check_metadata=False)
    rows = clips.to_pylist()
    for r in rows:
        assert len(r["labels"]) == 2 and len(r["action_labels"]) == 3 and len(r["frame_times_s"]) == 2
        assert sum(d["fraction"] for d in r["seg_class_fractions"]) == pytest.approx(1.0, abs=1e-4)
        assert len(r["seg_masks"]) == 2 and r["seg_masks"][0]["png"].startswith(b"\x89PNG")
        assert r["det_detections"] and all(0 <= d["x1"] <= d["x2"] <= 96.5 and 0 <= d["y2"] <= 64.5 for d in r["det_detections"])
    frames = duckdb.sql("select count(distinct (clip_id, d.frame_index)) from clips, "
                        "unnest(det_detections) as u(d)").fetchall()
    assert frames == [(4,)]
    top = duckdb.sql("select seg_class_fractions[1].fraction from clips").fetchall()
    assert len(top) == 2 and all(0 < t <= 1 for (t,) in top)
