"""Clips that follow shots: merge of short shots, split of long ones, and the driver-side re-plan (no Ray)."""
from __future__ import annotations

import itertools
import json

import pytest
from test_clips import info

from vidbatch.config import ClipConfig, SamplingConfig
from vidbatch.core.errors import ErrorRow
from vidbatch.core.schema import SHOTS
from vidbatch.plan.clips import plan_work_units
from vidbatch.plan.listing import VideoSource
from vidbatch.plan.prepare import PreparedVideo
from vidbatch.shots import Shot
from vidbatch.shots.planning import plan_shot_clips, replan_with_shots, shot_windows


def shots_at(*starts: int, frames: int) -> list[Shot]:
    """Contiguous shots starting at the given frames."""
    ends = [s - 1 for s in starts[1:]] + [frames - 1]
    return [Shot(s, e, None if i == 0 else 0.9) for i, (s, e) in enumerate(zip(starts, ends))]


def rounded(windows):
    return [(round(a, 6), round(b, 6)) for a, b in windows]


def test_shots_within_bounds_become_one_clip_each():
    # 10 fps: shots of 2 s, 3 s, 1.5 s
    assert rounded(shot_windows(shots_at(0, 20, 50, frames=65), 10, 6.5, 1.0, 10.0)) == [(0, 2), (2, 5), (5, 6.5)]


def test_a_short_shot_joins_its_shorter_neighbour():
    # shots 3 s, 0.4 s, 1.2 s, 4 s: the 0.4-s shot joins the 1.2-s one
    windows = shot_windows(shots_at(0, 30, 34, 46, frames=86), 10, 8.6, 1.0, 10.0)
    assert rounded(windows) == [(0, 3), (3, 4.6), (4.6, 8.6)]


def test_short_shots_at_the_edges_join_their_only_neighbour():
    # 0.3 s, 4.7 s, 0.7 s, 0.3 s: the first joins the second; the last two join each other
    windows = shot_windows(shots_at(0, 3, 50, 57, frames=60), 10, 6.0, 1.0, 10.0)
    assert rounded(windows) == [(0, 5), (5, 6)]
    windows = shot_windows(shots_at(0, 3, 30, 57, frames=60), 10, 6.0, 1.0, 10.0)
    assert rounded(windows) == [(0, 3), (3, 6)]


def test_a_video_shorter_than_the_minimum_is_one_short_clip():
    assert rounded(shot_windows(shots_at(0, 2, frames=5), 10, 0.5, 1.0, 10.0)) == [(0, 0.5)]


def test_a_long_shot_is_split_into_equal_windows_no_longer_than_max():
    windows = shot_windows(shots_at(0, 20, frames=270), 10, 27.0, 1.0, 10.0)
    assert rounded(windows) == [(0, 2), (2, 10.333333), (10.333333, 18.666667), (18.666667, 27)]
    assert all(b - a <= 10 + 1e-9 for a, b in windows)


def test_a_merge_that_exceeds_the_maximum_is_split_again():
    windows = shot_windows(shots_at(0, 95, frames=100), 10, 10.0, 1.0, 6.0)
    assert rounded(windows) == [(0, 5), (5, 10)]


def test_transition_gaps_stay_out_of_clips_unless_merged():
    # transnetv2 leaves transition frames 29-31 out of both shots
    shots = [Shot(0, 28, None), Shot(32, 79, 0.8)]
    assert rounded(shot_windows(shots, 10, 8.0, 1.0, 10.0)) == [(0, 2.9), (3.2, 8)]


@pytest.mark.parametrize("min_s,max_s", [(0.5, 1.0), (1.0, 2.0), (2.0, 30.0), (0.0, 0.3)])
def test_bounds_hold_for_any_shot_layout(min_s, max_s):
    import random

    rng = random.Random(7)
    for _ in range(50):
        frames = rng.randint(1, 400)
        starts = sorted({0, *rng.sample(range(frames), k=min(frames, rng.randint(0, 20)))})
        duration = frames / 25
        windows = shot_windows(shots_at(*starts, frames=frames), 25, duration, min_s, max_s)
        assert windows[0][0] == 0 and abs(windows[-1][1] - duration) < 1e-9
        assert all(abs(a[1] - b[0]) < 1e-9 for a, b in itertools.pairwise(windows))  # contiguous shots: full cover
        assert all(b - a <= max_s + 1e-9 for a, b in windows)
        if duration >= min_s:
            assert all(b - a >= min_s - 1e-9 for a, b in windows)


def test_clip_plans_follow_shots_with_deterministic_ids():
    cfg, sampling = ClipConfig(clip_mode="shots"), SamplingConfig(frames_per_clip=4)
    shots = shots_at(0, 20, 50, frames=65)
    clips = plan_shot_clips(info(6.5), "fp", shots, cfg, sampling)
    assert [(c.start_s, c.end_s) for c in clips] == [(0, 2), (2, 5), (5, 6.5)]
    assert [c.clip_index for c in clips] == [0, 1, 2]
    assert all(c.start_s <= t < c.end_s for c in clips for t in c.sample_times_s)
    assert [c.clip_id for c in clips] == [c.clip_id for c in plan_shot_clips(info(6.5), "fp", shots, cfg, sampling)]
    assert len({c.clip_id for c in clips}) == 3


def test_replan_writes_shot_rows_and_new_units():
    source, broken = VideoSource(uri="v.mp4", size=1, version="1"), VideoSource(uri="w.mp4", size=1, version="1")
    cfg, sampling = ClipConfig(clip_mode="shots"), SamplingConfig(frames_per_clip=2)
    fixed = plan_work_units("v.mp4", source.video_id, info(6.5), [], 60)
    prepared = [PreparedVideo(source, info(6.5), tuple(fixed), None), PreparedVideo(broken, info(3.0), (), None)]
    error = ErrorRow(uri="w.mp4", stage="decode", error_type="DecodeError", message="boom", video_id=broken.video_id)
    results = [
        {"video_json": json.dumps({"uri": "v.mp4", "video_id": source.video_id}), "n_frames": 65, "error_json": "",
         "shots_json": json.dumps([s.to_dict() for s in shots_at(0, 20, 50, frames=65)])},
        {"video_json": json.dumps({"uri": "w.mp4", "video_id": broken.video_id}), "n_frames": 0, "shots_json": "",
         "error_json": json.dumps(error.to_dict())},
    ]
    table, updated = replan_with_shots(prepared, results, cfg, sampling, 60.0, "content", "r1")
    assert table.schema.equals(SHOTS)
    assert table.column("start_frame").to_pylist() == [0, 20, 50]
    assert table.column("end_s").to_pylist() == [2.0, 5.0, 6.5]
    assert table.column("boundary_score").to_pylist()[0] is None
    assert [(c.start_s, c.end_s) for u in updated[0].units for c in u.clips] == [(0, 2), (2, 5), (5, 6.5)]
    assert updated[1].units == () and updated[1].error == error


def test_shot_times_on_variable_frame_rate_video_are_the_frames_own_times(tmp_path):
    """Frames 20-200 ms apart: a shot starting at frame 30 starts at that frame's timestamp, not at 30 / avg fps."""
    import av
    import numpy as np
    from hostile_corpus import make_corpus

    from vidbatch.config import ShotsConfig
    from vidbatch.plan.probe import probe_video
    from vidbatch.shots.stages import ShotDecodeStage

    (vfr,) = make_corpus(tmp_path, kinds=["vfr_mp4"])
    source = VideoSource(uri=str(vfr.path), size=1, version="1")
    (row,) = ShotDecodeStage(ShotsConfig(detector="content"))({"video_json": json.dumps({"uri": source.uri, "video_id": source.video_id})})
    times = np.frombuffer(row["frame_times"], np.float64)
    with av.open(str(vfr.path)) as c:
        pts = np.array([float(f.time) for f in c.decode(video=0)])
    assert times == pytest.approx(pts - pts[0])

    info = probe_video(source.uri)
    shots = [Shot(0, 29, None), Shot(30, info.frame_count - 1, 0.9)]
    result = {**row, "shots_json": json.dumps([s.to_dict() for s in shots])}
    cfg = ClipConfig(clip_mode="shots", min_clip_seconds=0.5, max_clip_seconds=10)
    table, (updated,) = replan_with_shots([PreparedVideo(source, info, (), None)], [result], cfg, SamplingConfig(frames_per_clip=2), 60.0, "content", "r")
    assert table.column("start_s").to_pylist() == pytest.approx([0.0, times[30]])
    assert table.column("end_s").to_pylist() == pytest.approx([times[30], info.duration_s])
    assert abs(times[30] - 30 / info.fps) > 0.1  # the average-rate guess would be this far off
    bounds = [t for u in updated.units for c in u.clips for t in (c.start_s, c.end_s)]
    assert bounds == pytest.approx([0.0, times[30], times[30], info.duration_s])
