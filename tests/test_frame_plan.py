"""One decode for every task: the shared canvas geometry, tasks' own sample times, per-task views. No Ray."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from videos import make_video, read_index

from vidbatch.decode.decode_stage import DecodeStage
from vidbatch.decode.decoder import DecodeStats, decode_unit
from vidbatch.infer.frame_views import FrameGeometry, centre_crops
from vidbatch.plan.clips import ClipPlan, WorkUnit
from vidbatch.plan.frame_plan import (
    FrameLayout,
    FrameSpec,
    StackSampling,
    job_frame_spec,
    stack_from_docs,
)

CROP = FrameSpec(resize_short=256, crop=224)


def unit_for(path: Path, clips: list[tuple[float, float, tuple[float, ...]]]) -> WorkUnit:
    plans = tuple(ClipPlan(i, f"c{i}", s, e, t) for i, (s, e, t) in enumerate(clips))
    return WorkUnit(uri=str(path), video_id="v", unit_index=0, start_offset_s=0.0, keyframe_interval_s=1.0, clips=plans)


def test_tasks_that_agree_keep_their_spec_others_share_a_letterboxed_canvas():
    assert job_frame_spec([CROP, CROP]) == CROP
    assert job_frame_spec([]) == FrameSpec(256, 224)
    mixed = job_frame_spec([CROP, FrameSpec(520, 520, letterbox=True), FrameSpec(171, 171, letterbox=True)])
    assert mixed == FrameSpec(520, 520, letterbox=True)
    assert job_frame_spec([CROP, FrameSpec(171, 171, letterbox=True)]) == FrameSpec(256, 256, letterbox=True)


def test_stack_is_contiguous_centred_and_clamped_to_the_clip():
    clip = ClipPlan(0, "c", 2.0, 4.0, (2.25, 2.75, 3.25, 3.75))
    assert StackSampling(frames=4, fps=10).times(clip) == pytest.approx((2.8, 2.9, 3.0, 3.1))
    long = StackSampling(frames=8, fps=2).times(clip)  # 4 s of stack in a 2 s clip: repeats at the edges
    assert long[0] == 2.0 and long[-1] == 3.75 and list(long) == sorted(long)
    assert stack_from_docs("estimated with `frame_rate=7.5`, `clips_per_video=5`, and `clip_len=16`.") == StackSampling(16, 7.5)
    assert stack_from_docs("no settings") is None


def test_letterbox_keeps_the_whole_frame_and_records_the_source_size(tmp_path: Path):
    path = make_video(tmp_path / "wide.mp4", seconds=1.0, fps=10, width=160, height=96)
    spec = FrameSpec(80, 80, letterbox=True)
    (clip,) = decode_unit(unit_for(path, [(0.0, 1.0, (0.0, 0.5))]), spec)
    assert clip.frames.shape == (2, 80, 80, 3) and clip.source_wh == (160, 96)
    w, h = spec.scaled_size(160, 96)
    assert (w, h) == (80, 48)
    assert [read_index(f[:h, :w]) for f in clip.frames] == [0, 5]
    assert clip.frames[:, h:].max() == 0  # padding below the image


def test_rotated_source_size_is_upright(tmp_path: Path):
    path = make_video(tmp_path / "rot.mp4", seconds=0.5, fps=10, width=160, height=96, rotation=90)
    (clip,) = decode_unit(unit_for(path, [(0.0, 0.5, (0.0,))]), FrameSpec(64, 64, letterbox=True))
    assert clip.source_wh == (96, 160)


def test_stacks_are_decoded_in_the_same_pass_and_travel_in_fixed_slots(tmp_path: Path):
    path = make_video(tmp_path / "a.mp4", seconds=4.0, fps=10)
    unit = unit_for(path, [(0.0, 2.0, (0.5, 1.5)), (2.0, 4.0, (2.5, 3.5))])
    layout = FrameLayout(shared=3, stacks=(None, StackSampling(frames=4, fps=10), StackSampling(frames=2, fps=5)))
    assert layout.total == 9 and layout.slots(0) is None and layout.slots(1) == slice(3, 7) and layout.slots(2) == slice(7, 9)

    stats = DecodeStats()
    clips = list(decode_unit(layout.with_task_samples(unit), CROP, "sequential", stats=stats))
    assert [len(c.frames) for c in clips] == [2 + 4 + 2] * 2
    assert stats.seeks == 0 and stats.decoded_frames <= 40  # one in-order pass over the file
    assert stats.kept_frames == 2 * (2 + 4 + 2)

    stage = DecodeStage(CROP, "sequential", 0, layout.total, layout=layout)
    batches = list(stage({"unit_json": np.array([json.dumps(unit.to_dict())])}))
    first = batches[0]
    assert first["frames"].shape == (1, 9, 224, 224, 3)
    assert first["n_frames"].tolist() == [2] and first["frame_times_s"][0, :2].tolist() == pytest.approx([0.5, 1.5])
    indices = [read_index(f) for f in first["frames"][0]]
    # shared samples, one empty shared slot, 4 frames at 10 fps centred on 1.0 s, 2 frames at 5 fps
    assert indices[:2] == [5, 15] and first["frames"][0, 2].max() == 0
    assert indices[3:7] == [8, 9, 10, 11] and indices[7:] == [8, 10]
    assert [read_index(f) for f in batches[1]["frames"][0, 3:7]] == [28, 29, 30, 31]
    assert first["source_wh"].tolist() == [[160, 120]]


def test_a_crop_cut_from_the_canvas_matches_decoding_with_the_crop(tmp_path: Path):
    rng = np.random.default_rng(0)
    smooth = [np.kron(rng.integers(0, 255, (6, 8, 3), dtype=np.uint8), np.ones((20, 20, 1), np.uint8)) for _ in range(2)]
    path = make_video(tmp_path / "blocks.mp4", fps=10, width=160, height=120, frames=smooth)
    unit = unit_for(path, [(0.0, 0.2, (0.0, 0.1))])
    crop = FrameSpec(resize_short=64, crop=56)
    (direct,) = decode_unit(unit, crop)
    canvas_spec = FrameSpec(160, 160, letterbox=True)
    (canvas,) = decode_unit(unit, canvas_spec)
    geometry = FrameGeometry(canvas_spec, (canvas.source_wh,))
    cut = centre_crops(torch.from_numpy(canvas.frames), [2], geometry, crop).numpy()
    assert cut.shape == direct.frames.shape
    assert np.abs(cut.astype(int) - direct.frames.astype(int)).mean() < 6
    # the job decoded with the task's own spec: the canvases are the task's input as they are
    same = torch.from_numpy(direct.frames)
    assert centre_crops(same, [2], FrameGeometry(crop, ((160, 120),)), crop) is same
