"""clip_mode: shots end to end through the session's real local Ray: shots/ written, clips cut at the shots."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_shots import CUTS, FPS, N_FRAMES, shot_footage
from videos import make_video

import vidbatch
from vidbatch.core.schema import SHOTS
from vidbatch.store.committed import read_table

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

    shots = read_table(str(out), "shots")
    assert shots.schema.equals(SHOTS, check_metadata=False)
    assert set(shots["detector"].to_pylist()) == {detector}
    assert shots["start_frame"].to_pylist()[:3] == [0, *CUTS]
    assert shots["shot_index"].to_pylist() == list(range(shots.num_rows))
    assert shots["end_frame"].to_pylist()[-1] == N_FRAMES - 1

    clips = sorted(read_table(str(out), "clips").to_pylist(), key=lambda r: r["start_s"])
    starts, ends = [c["start_s"] for c in clips], [c["end_s"] for c in clips]
    for cut in CUTS:
        t = cut / FPS
        assert any(abs(s - t) < 1e-9 for s in starts) and any(abs(e - t) < 1e-9 for e in ends)
        assert not any(s < t - 1e-9 and e > t + 1e-9 for s, e in zip(starts, ends)), f"a clip spans the cut at {t}s"
    assert all(0.5 - 1e-9 <= e - s <= 1.0 + 1e-9 for s, e in zip(starts, ends))
    assert starts[0] == 0 and abs(ends[-1] - N_FRAMES / FPS) < 1e-9

    manifest = json.loads((out / "runs" / f"{summary.run_id}.json").read_text())
    assert manifest["table_versions"]["shots"] is not None and manifest["counts"]["clips"] == len(clips)


def test_a_changed_video_replaces_its_shots(ray_session, tmp_path: Path):
    """Shots files follow the video like its clip files: an incremental run over a changed file shows only the new
    version's shots, and an unchanged file keeps its own."""
    archive, out = tmp_path / "archive", tmp_path / "out"
    archive.mkdir()
    make_video(archive / "cuts.mp4", fps=FPS, width=160, height=96, frames=shot_footage())
    make_video(archive / "still.mp4", fps=FPS, width=160, height=96, frames=shot_footage()[: CUTS[0]])
    cfg = {
        "inputs": [str(archive)], "output": str(out), "tasks": [], "sampling": {"frames_per_clip": 2},
        "clips": {"clip_mode": "shots", "min_clip_seconds": 0.5, "max_clip_seconds": 1.0},
        "shots": {"detector": "content"}, "incremental": {"enabled": True},
    }

    def shots_per_video() -> dict[str, int]:
        rows = read_table(str(out), "shots").to_pylist()
        counts: dict[str, int] = {}
        for r in rows:
            counts[r["video_id"]] = counts.get(r["video_id"], 0) + 1
        return counts

    vidbatch.run(cfg)
    before = shots_per_video()
    assert sorted(before.values()) == [1, len(CUTS) + 1]
    make_video(archive / "cuts.mp4", fps=FPS, width=160, height=96, frames=shot_footage()[: CUTS[1]])  # one cut left
    summary = vidbatch.run(cfg)
    assert (summary.counts.changed, summary.counts.skipped) == (1, 1)
    assert sorted(shots_per_video().values()) == [1, 2]
