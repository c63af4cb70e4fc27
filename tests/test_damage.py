"""A damaged stretch in a video, from decode stage to the driver's unit sink, without Ray: the clip with no
decodable frame is lost alone (one DamagedClip row with its range), the others are kept, the video is ok."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from vidbatch.core.errors import ErrorRow, failed_videos, merge_per_video
from vidbatch.core.schema import clips_schema, result_schema
from vidbatch.core.storage import OutputStore
from vidbatch.decode.decode_stage import DecodeStage, result_table
from vidbatch.plan.clips import ClipPlan, WorkUnit
from vidbatch.plan.frame_plan import FrameSpec
from vidbatch.plan.listing import VideoSource
from vidbatch.plan.prepare import PreparedVideo
from vidbatch.plan.probe import VideoInfo, probe_video
from vidbatch.store.plans import VideoPlan, unit_key
from vidbatch.store.sink import UnitSink

SPEC = FrameSpec(resize_short=120, crop=112)


@pytest.fixture(scope="module")
def damaged(tmp_path_factory) -> Path:
    from hostile_corpus import make_corpus

    (f,) = make_corpus(tmp_path_factory.mktemp("damage"), kinds=["damaged_middle"])
    return f.path


def one_unit_sink(out: Path, source: VideoSource, info: VideoInfo, clips: int) -> tuple[UnitSink, str]:
    """The driver's sink for a video planned as one unit of `clips` clips, and that unit's key."""
    plan = VideoPlan(PreparedVideo(source, info, (), None), None, 0, (0,), clips)
    return UnitSink(OutputStore(str(out)), "r", "p", clips_schema([]), [plan], set(), 1), unit_key(source.fingerprint, 0, "p")


def test_a_lost_clip_drops_only_itself_and_the_video_stays_ok(damaged: Path, tmp_path: Path):
    info = probe_video(str(damaged))
    source = VideoSource(str(damaged), damaged.stat().st_size, "1")
    # frames 4.6-5.4 s do not decode: clip 1 lies inside that stretch, clip 0 has stand-ins, clips 2-3 are clean
    plans = [(4.0, 5.0, (4.2, 4.8)), (4.6, 5.4, (4.8, 5.0, 5.2)), (6.0, 7.0, (6.2, 6.8)), (7.0, 8.0, (7.2, 7.8))]
    clips = tuple(ClipPlan(i, f"c{i}", s, e, t) for i, (s, e, t) in enumerate(plans))
    unit = WorkUnit(str(damaged), source.video_id, 0, info.start_s, info.keyframe_interval_s, clips)
    stage = DecodeStage(SPEC, "auto", 1, 3)
    batches = list(stage({"unit_json": np.array([json.dumps(unit.to_dict())])}))
    assert [b["clip_id"][0] for b in batches] == ["c0", "c1", "c2", "c3"]  # decoding went on after the lost clip
    assert batches[1]["error_type"][0] == "DamagedClip" and batches[0]["damaged_frames"][0] == 1

    schema = result_schema([])
    sink, key = one_unit_sink(tmp_path, source, info, len(clips))
    for b in batches:  # each clip reaches the driver on its own, as from Ray
        sink.add(result_table(b, schema, {}))
    assert not sink.unfinished()
    outcome = sink.outcomes[key]
    assert (outcome.clips, outcome.damaged_clips) == (3, 2)
    (error,) = [ErrorRow(**e) for e in outcome.errors]
    assert (error.stage, error.error_type, error.clip_id, error.start_s, error.end_s) == ("decode", "DamagedClip", "c1", 4.6, 5.4)
    assert "no decodable frame in 4.600-5.400 s" in error.message
    assert failed_videos([error], Counter({source.video_id: 3})) == set()
    assert failed_videos([error], Counter()) == {source.video_id}  # nothing written at all: failed


def test_damaged_clip_rows_are_not_merged_into_one_per_video():
    rows = [
        ErrorRow("v.mp4", "decode", "DamagedClip", "lost", video_id="v", clip_id="c1", start_s=2.0, end_s=4.0),
        ErrorRow("v.mp4", "decode", "DamagedClip", "lost", video_id="v", clip_id="c3", start_s=6.0, end_s=8.0),
        ErrorRow("w.mp4", "decode", "DecodeError", "cut", video_id="w", clip_id="c5", start_s=10.0, end_s=20.0),
        ErrorRow("w.mp4", "decode", "DecodeError", "cut", video_id="w", clip_id="c7", start_s=14.0, end_s=16.0),
    ]
    merged = merge_per_video(rows)
    assert [(r.video_id, r.clip_id, r.end_s) for r in merged] == [("w", "c5", 20.0), ("v", "c1", 4.0), ("v", "c3", 8.0)]
    assert failed_videos(merged, Counter(v=2, w=1)) == {"w"}


def test_the_sink_ignores_rows_it_has_seen(damaged: Path, tmp_path: Path):
    """A decode task that Ray runs again after its worker died sends its clips again: each is staged once."""
    info = probe_video(str(damaged))
    source = VideoSource(str(damaged), damaged.stat().st_size, "1")
    clips = tuple(ClipPlan(i, f"c{i}", float(i), i + 1.0, (i + 0.5,)) for i in range(3))
    unit = WorkUnit(str(damaged), source.video_id, 0, info.start_s, info.keyframe_interval_s, clips)
    tables = [result_table(b, result_schema([]), {}) for b in DecodeStage(SPEC, "auto", 1, 1)(
        {"unit_json": np.array([json.dumps(unit.to_dict())])})]
    sink, key = one_unit_sink(tmp_path, source, info, len(clips))
    import pyarrow as pa

    sink.add(tables[0])
    sink.add(pa.concat_tables([tables[0], tables[1], tables[1]]))  # the retry's first rows, one twice
    sink.add(pa.concat_tables(tables))  # and all of them again, after the unit may have finished
    assert not sink.unfinished() and sink.outcomes[key].clips == 3
    import pyarrow.parquet as pq

    assert pq.read_table(tmp_path / f"_staging/r/units/{key}.parquet")["clip_id"].to_pylist() == ["c0", "c1", "c2"]
