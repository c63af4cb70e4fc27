"""clip_mode: shots end to end through the session's real local Ray: shots/ written, clips cut at the shots."""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from test_shots import CUTS, FPS, N_FRAMES, shot_footage
from videos import make_video

import vidbatch
from vidbatch.outputs import table_files
from vidbatch.schema import SHOTS

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("detector", ["transnetv2", "content"])
def test_clips_follow_the_detected_shots(detector, ray_session, tmp_path: Path):
    video = make_video(tmp_path / "cuts.mp4", fps=FPS, width=160, height=96, frames=shot_footage())
    out = tmp_path / "out"
    summary = vidbatch.run(
        {
            "inputs": [str(video)],
            "output": str(out),
            "clips": {"clip_mode": "shots", "min_clip_seconds": 0.5, "max_clip_seconds": 1.0},
            "sampling": {"frames_per_clip": 2},
            "tasks": [],
            "shots": {"detector": detector, "batch_size": 2},
        }
    )
    assert summary.exit_code == 0, summary.error

    shots = pq.read_table(table_files(str(out), "shots"), partitioning=None)
    assert shots.schema.equals(SHOTS, check_metadata=False)
    assert set(shots["detector"].to_pylist()) == {detector}
    assert shots["start_frame"].to_pylist()[:3] == [0, *CUTS]
    assert shots["shot_index"].to_pylist() == list(range(shots.num_rows))
    assert shots["end_frame"].to_pylist()[-1] == N_FRAMES - 1

    clips = sorted(pq.read_table(table_files(str(out), "clips"), partitioning=None).to_pylist(), key=lambda r: r["start_s"])
    starts, ends = [c["start_s"] for c in clips], [c["end_s"] for c in clips]
    for cut in CUTS:
        t = cut / FPS
        assert any(abs(s - t) < 1e-9 for s in starts) and any(abs(e - t) < 1e-9 for e in ends)
        assert not any(s < t - 1e-9 and e > t + 1e-9 for s, e in zip(starts, ends)), f"a clip spans the cut at {t}s"
    assert all(0.5 - 1e-9 <= e - s <= 1.0 + 1e-9 for s, e in zip(starts, ends))
    assert starts[0] == 0 and abs(ends[-1] - N_FRAMES / FPS) < 1e-9

    manifest = json.loads((out / "runs" / f"{summary.run_id}.json").read_text())
    assert manifest["files"]["shots"] and manifest["counts"]["clips"] == len(clips)
