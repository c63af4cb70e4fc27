from __future__ import annotations

from vidbatch.core.errors import ErrorRow, merge_per_video


def test_one_row_per_video_named_by_its_earliest_failure():
    rows = [
        ErrorRow("v.mp4", "infer", "OutOfMemoryError", "oom", video_id="v", clip_id="c2", start_s=4.0, end_s=6.0),
        ErrorRow("v.mp4", "decode", "DecodeError", "cut", video_id="v", clip_id="c5", start_s=10.0, end_s=20.0),
        ErrorRow("v.mp4", "decode", "DecodeError", "cut", video_id="v", clip_id="c1", start_s=2.0, end_s=4.0),
        ErrorRow("w.mp4", "probe", "InvalidDataError", "bad", video_id="w"),
    ]
    merged = {e.video_id: e for e in merge_per_video(rows)}
    assert len(merged) == 2 and merged["w"] == rows[3]
    v = merged["v"]
    assert (v.clip_id, v.start_s, v.end_s, v.stage) == ("c1", 2.0, 20.0, "decode")
    assert v.message == "cut (and 2 more failures in this video)"
