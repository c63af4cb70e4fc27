from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from videos import index_frame, make_video, read_index

from vidbatch.config import ClipConfig, SamplingConfig
from vidbatch.core.errors import DecodeError
from vidbatch.decode.decoder import DecodeStats, decode_unit, frame_to_array
from vidbatch.plan.clips import plan_clips, plan_work_units
from vidbatch.plan.frame_plan import FrameSpec
from vidbatch.plan.probe import probe_video

SPEC = FrameSpec(resize_short=120, crop=112)


def units_for(path: Path, clip_seconds=1.0, sampling: SamplingConfig | None = None, unit_seconds=60.0, **clip_kw):
    sampling = sampling or SamplingConfig(frames_per_clip=4)
    info = probe_video(str(path))
    clips = plan_clips(info, "fp", ClipConfig(clip_seconds=clip_seconds, **clip_kw), sampling)
    return info, clips, plan_work_units(str(path), "vid", info, clips, unit_seconds)


@pytest.fixture(scope="module")
def long_gop(tmp_path_factory) -> Path:
    return make_video(tmp_path_factory.mktemp("dec") / "gop.mp4", seconds=6.0, fps=10, gop=25)


@pytest.fixture(scope="module", params=["gop.mp4", "bframes.mkv", "bframes.ts"])
def any_container(request, tmp_path_factory) -> Path:
    """MP4; MKV and MPEG-TS with B-frames (TS also starts at 0.2 s and seeks inexactly)."""
    bframes = 0 if request.param.startswith("gop") else 2
    return make_video(tmp_path_factory.mktemp("dec") / request.param, seconds=6.0, fps=10, gop=25, bframes=bframes)


@pytest.mark.parametrize("strategy", ["auto", "sequential", "seek"])
@pytest.mark.parametrize(("clip_seconds", "frames_per_clip"), [(1.0, 4), (3.0, 1), (0.5, 1)])
def test_sampled_frames_are_exactly_the_planned_ones(any_container: Path, strategy: str, clip_seconds, frames_per_clip):
    _, clips, units = units_for(
        any_container, clip_seconds=clip_seconds, sampling=SamplingConfig(frames_per_clip=frames_per_clip), unit_seconds=2.0
    )
    decoded = [d for u in units for d in decode_unit(u, SPEC, strategy=strategy)]
    assert [d.clip for d in decoded] == clips
    for d in decoded:
        assert d.frame_times_s == pytest.approx(d.clip.sample_times_s, abs=1e-9)
        # the pixels are the planned frames, not neighbours
        assert [read_index(f) for f in d.frames] == [round(t * 10) for t in d.clip.sample_times_s]


def test_auto_seeks_across_long_gaps_and_decodes_through_short_ones(tmp_path: Path):
    path = make_video(tmp_path / "sparse.mp4", seconds=20.0, fps=10, gop=10)  # a keyframe every second
    sparse = DecodeStats()
    _, clips, (unit,) = units_for(path, clip_seconds=4.0, sampling=SamplingConfig(frames_per_clip=1))
    got = [read_index(d.frames[0]) for d in decode_unit(unit, SPEC, strategy="auto", stats=sparse)]
    assert got == [20, 60, 100, 140, 180]
    assert sparse.seeks == 5 and sparse.decoded_frames < 60  # jumped over whole GOPs

    dense = DecodeStats()
    _, clips, (unit,) = units_for(path, clip_seconds=1.0, sampling=SamplingConfig(frames_per_clip=8))
    assert len(list(decode_unit(unit, SPEC, strategy="auto", stats=dense))) == 20
    assert dense.seeks == 0 and dense.decoded_frames == 200 and dense.kept_frames == 160

    sequential = DecodeStats()
    _, clips, (unit,) = units_for(path, clip_seconds=4.0, sampling=SamplingConfig(frames_per_clip=1))
    list(decode_unit(unit, SPEC, strategy="sequential", stats=sequential))
    # one seek to the unit's first sample (2 s), then every frame up to the last sample (18 s) and one past it
    assert sequential.seeks == 1 and sequential.decoded_frames == 162


def test_overlapping_clips_and_repeated_samples(long_gop: Path):
    _, clips, units = units_for(
        long_gop, clip_seconds=0.3, stride_seconds=0.2, sampling=SamplingConfig(frames_per_clip=5)
    )
    decoded = [d for u in units for d in decode_unit(u, SPEC)]
    assert len(decoded) == len(clips) == 29  # the 0.2 s tail is under min_last_clip_seconds
    for d in decoded:
        assert [read_index(f) for f in d.frames] == [round(t * 10) for t in d.clip.sample_times_s]


def test_frame_shape_and_dtype(long_gop: Path):
    _, _, units = units_for(long_gop)
    d = next(decode_unit(units[0], FrameSpec(resize_short=256, crop=224)))
    assert d.frames.shape == (4, 224, 224, 3) and d.frames.dtype == np.uint8


def test_frame_to_array_resizes_short_side_then_crops():
    import av

    frame = av.VideoFrame.from_ndarray(index_frame(37, 320, 180), format="rgb24")
    out = frame_to_array(frame, FrameSpec(resize_short=90, crop=64))
    assert out.shape == (64, 64, 3)
    assert FrameSpec(resize_short=90, crop=64).scaled_size(320, 180) == (160, 90)


# Where a top-left marker ends up once the display matrix is applied (quadrants TL, TR, BL, BR after a centre
# crop), as `ffmpeg -i rotated.mp4` (autorotate) shows it; checked against ffmpeg 5 when this test was written.
@pytest.mark.parametrize(("rotation", "quadrants"), [(0, [1, 0, 0, 0]), (90, [0, 0, 1, 0]), (180, [0, 0, 0, 1]), (270, [0, 1, 0, 0])])
def test_display_rotation_is_undone_like_ffmpeg(tmp_path: Path, rotation: int, quadrants: list[int]):
    img = np.zeros((96, 160, 3), np.uint8)
    img[:48, :80] = 255
    path = make_video(tmp_path / "rot.mp4", frames=[img] * 3, fps=10, width=160, height=96, rotation=rotation)
    info, _, units = units_for(path, sampling=SamplingConfig(frames_per_clip=1))
    assert info.rotation == rotation
    out = next(decode_unit(units[0], FrameSpec(resize_short=96, crop=96))).frames[0]
    assert [int(out[y : y + 48, x : x + 48].mean() > 100) for y in (0, 48) for x in (0, 48)] == quadrants


def faststart_copy(src_path: Path, dst_path: Path) -> Path:
    """Remux with the index (moov) at the front, so a truncated copy still opens and fails mid-stream."""
    import av

    with av.open(str(src_path)) as src, av.open(str(dst_path), "w", options={"movflags": "faststart"}) as dst:
        stream = dst.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(src.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                dst.mux(packet)
    return dst_path


def test_truncated_stream_yields_good_clips_then_raises(tmp_path: Path, long_gop: Path):
    cut = faststart_copy(long_gop, tmp_path / "cut.mp4")
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
    info, clips, (unit,) = units_for(cut)
    assert info.duration_s == pytest.approx(6.0)  # the header still promises the whole video
    got = []
    with pytest.raises(DecodeError, match="stream ended"):
        for d in decode_unit(unit, SPEC):
            got.append(d)
    assert 0 < len(got) < len(clips)
    assert [d.clip for d in got] == clips[: len(got)]
