"""Plans staged beside the run, without Ray: the driver keeps per video a few numbers, never the clips, and the
sink finds each result row's unit from them; decode tasks read their units back from the plan files."""
from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import numpy as np
import pyarrow as pa

from vidbatch.config import ClipConfig, SamplingConfig
from vidbatch.core.schema import clips_schema, result_schema
from vidbatch.core.storage import OutputStore
from vidbatch.decode.decode_stage import frames_batch, result_table
from vidbatch.plan.clips import WorkUnit, plan_clips, plan_work_units
from vidbatch.plan.frame_plan import FrameSpec
from vidbatch.plan.listing import VideoSource
from vidbatch.plan.prepare import PreparedVideo
from vidbatch.plan.probe import VideoInfo
from vidbatch.store.plans import UnitSlices, VideoPlan, stage_plans, unit_key, unit_slices
from vidbatch.store.sink import UnitSink

SPEC = FrameSpec(resize_short=16, crop=8)


def planned(n_videos: int, clips_per_video: int, unit_seconds: float = 60.0) -> list[PreparedVideo]:
    """Videos planned by the real planner from stream facts made up for the test (2-s clips)."""
    videos = []
    for i in range(n_videos):
        source = VideoSource(f"/arch/v{i:05d}.mp4", 1000 + i, "1")
        info = VideoInfo(clips_per_video * 2.0, 25.0, clips_per_video * 50, 64, 48, "h264", "yuv420p", 0, False, 0.0, 2.0)
        clips = plan_clips(info, source.fingerprint, ClipConfig(clip_seconds=2.0), SamplingConfig(frames_per_clip=8))
        videos.append(PreparedVideo(source, info, tuple(plan_work_units(source.uri, source.video_id, info, clips, unit_seconds)), None))
    return videos


def driver_state_peak(tmp_path: Path, n_videos: int, clips_per_video: int) -> int:
    """tracemalloc peak of what the driver builds once the probe tasks' rows arrive: the VideoPlans, the slices
    of units to decode and the sink."""
    store = OutputStore(str(tmp_path))
    rows = [p.to_json() for p in stage_plans(store, "r", planned(n_videos, clips_per_video))]  # the probe tasks' part
    tracemalloc.start()
    plans = [VideoPlan.from_json(r) for r in rows]
    todo = unit_slices(plans, "p", set(), 200)
    sink = UnitSink(store, "r", "p", clips_schema([]), plans, todo.done, todo.units)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert todo.clips == n_videos * clips_per_video and sink.unfinished() == todo.units
    return peak


def test_driver_planning_memory_does_not_grow_with_the_clips(tmp_path: Path):
    few, many = driver_state_peak(tmp_path / "few", 200, 30), driver_state_peak(tmp_path / "many", 200, 300)
    assert many < 1.5 * few, (few, many)  # ten times the clips; planned on the driver, it was about 10x


def test_slices_read_back_the_units_still_to_do(tmp_path: Path):
    store = OutputStore(str(tmp_path))
    videos = planned(3, 10, unit_seconds=4.0)  # 5 units of 2 clips each per video
    plans = stage_plans(store, "r", videos)
    staged = {unit_key(videos[1].source.fingerprint, 2, "p"), "a-unit-of-another-video"}
    todo = unit_slices(plans, "p", staged, parts=4)
    assert (todo.units, todo.clips, todo.done) == (14, 28, {unit_key(videos[1].source.fingerprint, 2, "p")})
    read = UnitSlices(str(tmp_path))
    units = [WorkUnit.from_dict(json.loads(r["unit_json"])) for s in todo.slices for r in read(s)]
    want = [u for v in videos for u in v.units if not (v is videos[1] and u.unit_index == 2)]
    assert units == want and len(todo.slices) <= 4 + 1  # split at the staged unit


def _rows(unit: WorkUnit, indexes: list[int] | None = None) -> list[dict]:
    return [
        {"video_id": unit.video_id, "video_uri": unit.uri, "clip_id": c.clip_id, "clip_index": c.clip_index,
         "start_s": c.start_s, "end_s": c.end_s, "frames": np.zeros((1, 8, 8, 3), np.uint8), "frame_times_s": [c.start_s]}
        for c in unit.clips if indexes is None or c.clip_index in indexes
    ]


def _table(rows: list[dict]) -> pa.Table:
    return result_table(frames_batch(rows, 1, SPEC), result_schema([]), {})


def test_the_sink_finds_each_rows_unit_across_videos_and_ignores_repeats(tmp_path: Path):
    store = OutputStore(str(tmp_path))
    a, b = planned(2, 4, unit_seconds=4.0)  # two units of two clips each
    plans = stage_plans(store, "r", [a, b])
    sink = UnitSink(store, "r", "p", clips_schema([]), plans, set(), 4)
    # clip indexes repeat across videos and units arrive interleaved, as from an actor pool
    sink.add(_table(_rows(a.units[0]) + _rows(b.units[0], [0]) + _rows(b.units[1])))
    assert len(sink.outcomes) == 2 and sink.unfinished() == 2
    sink.add(_table(_rows(b.units[0]) + _rows(a.units[0])))  # b's first unit completes; a's rows are repeats
    stopped = {**_rows(a.units[1], [2])[0], "error_stage": "decode", "error_type": "DecodeError", "error_message": "cut"}
    sink.add(_table([stopped]))  # the decoder stopped at clip 2: clip 3 is lost with it, the unit is done
    assert sink.unfinished() == 0 and not sink.targets and not sink.rows
    clips = {o.unit_key: (o.video_id, o.clips) for o in sink.outcomes.values()}
    assert clips == {unit_key(a.source.fingerprint, 0, "p"): (a.source.video_id, 2),
                     unit_key(a.source.fingerprint, 1, "p"): (a.source.video_id, 0),
                     unit_key(b.source.fingerprint, 0, "p"): (b.source.video_id, 2),
                     unit_key(b.source.fingerprint, 1, "p"): (b.source.video_id, 2)}
