"""Per-clip thumbnails: the middle sampled frame, whole and upright, ~160 px wide, carried to clips/."""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image
from videos import make_video, read_index

from vidbatch.config import ClipConfig, SamplingConfig
from vidbatch.core.schema import clips_schema, result_schema, thumbnail_fields
from vidbatch.decode.decode_stage import DecodeStage, result_table
from vidbatch.decode.decoder import decode_unit
from vidbatch.decode.thumbnails import thumbnail_size
from vidbatch.plan.clips import plan_clips, plan_work_units
from vidbatch.plan.frame_plan import FrameSpec
from vidbatch.plan.probe import probe_video

SPEC = FrameSpec(resize_short=120, crop=112)


def _jpeg(data: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(data))
    assert image.format == "JPEG"
    return np.asarray(image.convert("RGB"))


def _units(path: Path, frames_per_clip: int = 3):
    info = probe_video(str(path))
    clips = plan_clips(info, "fp", ClipConfig(clip_seconds=1.0), SamplingConfig(frames_per_clip=frames_per_clip))
    return clips, plan_work_units(str(path), "vid", info, clips, 60.0)


def test_sizes_keep_aspect_and_never_upscale():
    assert thumbnail_size(1920, 1080, 0, 160) == (160, 90)
    assert thumbnail_size(1920, 1080, 90, 160) == (160, 284)
    assert thumbnail_size(100, 50, 0, 160) == (100, 50)


@pytest.mark.parametrize("rotation", [0, 90])
def test_thumbnail_is_the_middle_sample_whole_and_upright(tmp_path, rotation):
    path = make_video(tmp_path / "v.mp4", seconds=2.0, fps=10, width=320, height=240, rotation=rotation)
    clips, units = _units(path)
    decoded = [c for u in units for c in decode_unit(u, SPEC, thumbnail_width=160)]
    assert len(decoded) == len(clips) == 2
    for clip in decoded:
        img = _jpeg(clip.thumbnail)
        assert img.shape[:2] == ((120, 160) if rotation == 0 else (213, 160))
        middle = round(clip.clip.sample_times_s[1] * 10)  # frame index shown at the middle sample
        if rotation == 0:
            assert read_index(img) == middle
        else:  # upright: the index bands run down the rotated frame's columns
            assert read_index(np.rot90(img, k=-1)) == middle
    assert all(c.thumbnail is None for u in units for c in decode_unit(u, SPEC))


def test_decode_stage_carries_thumbnails_only_when_asked(tmp_path):
    path = make_video(tmp_path / "v.mp4", seconds=1.0, fps=10)
    _, units = _units(path, frames_per_clip=2)
    batch = {"unit_json": np.array([json.dumps(units[0].to_dict())])}
    on = list(DecodeStage(SPEC, "auto", 1, 2, None, thumbnail_width=160)(batch))
    off = list(DecodeStage(SPEC, "auto", 1, 2, None, thumbnail_width=None)(batch))
    assert "thumbnail" in on[0] and "thumbnail" not in off[0]
    table = result_table(on[0], result_schema([]), {})
    assert table.column_names[-1] == "thumbnail" and _jpeg(table["thumbnail"][0].as_py()).shape == (120, 160, 3)
    assert "thumbnail" not in result_table(off[0], result_schema([]), {}).column_names
    assert clips_schema(thumbnail_fields(True)).field("thumbnail").type == "binary"


@pytest.mark.e2e
def test_job_stores_thumbnails_by_default(kinds_output):
    out, archive, _, _ = kinds_output
    rows = pq.read_table(out / "clips", columns=["video_uri", "frame_times_s", "thumbnail"]).to_pylist()
    assert len(rows) == 18 and all(r["thumbnail"] for r in rows)
    assert {_jpeg(r["thumbnail"]).shape for r in rows} == {(120, 160, 3)}  # 192x144 sources
    warm = next(r for r in rows if r["video_uri"].endswith("gradient0.mp4"))
    assert _jpeg(warm["thumbnail"])[60, 80, 0] > 150  # the warm gradient, not a black frame
