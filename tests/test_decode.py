from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from videos import index_frame, make_video, read_index

from vidbatch.config import ClipConfig, SamplingConfig
from vidbatch.core.errors import DecodeError
from vidbatch.decode.decoder import DecodeStats, decode_unit, frame_to_array
from vidbatch.plan.clips import ClipPlan, WorkUnit, plan_clips, plan_work_units
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


# ---------------------------------------------------------------- hostile files (tests/hostile_corpus.py)


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> dict:
    from hostile_corpus import make_corpus

    kinds = ["damaged_middle", "nonmonotonic_pts", "mpeg_ts_pts_wrap", "audio_longer_than_video", "vfr_mp4"]
    return {f.kind: f.path for f in make_corpus(tmp_path_factory.mktemp("hostile-decode"), kinds=kinds)}


def best_effort_reference(path: Path) -> list[tuple[float, np.ndarray]]:
    """Every decodable frame with FFmpeg's best-effort time (guess_correct_pts replayed independently of
    vidbatch), converted as the decoder converts them."""
    import av

    out, faulty_pts, faulty_dts, last_pts, last_dts = [], 0, 0, None, None
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        for packet in c.demux(s):
            try:
                frames = packet.decode()
            except av.error.InvalidDataError:
                continue
            for f in frames:
                if f.dts is not None:
                    faulty_dts += last_dts is not None and f.dts <= last_dts
                    last_dts = f.dts
                if f.pts is not None:
                    faulty_pts += last_pts is not None and f.pts <= last_pts
                    last_pts = f.pts
                ts = f.pts if f.pts is not None and (faulty_pts <= faulty_dts or f.dts is None) else f.dts
                out.append((float(ts * s.time_base), frame_to_array(f, SPEC)))
    return out


def on_screen(reference: list[tuple[float, np.ndarray]], t: float, tol: float) -> tuple[float, np.ndarray]:
    shown = [r for r in reference if r[0] <= t + tol]
    return shown[-1] if shown else reference[0]


@pytest.mark.parametrize("strategy", ["auto", "seek"])
@pytest.mark.parametrize("kind", ["nonmonotonic_pts", "mpeg_ts_pts_wrap", "vfr_mp4"])
def test_samples_are_the_frames_on_screen_by_best_effort_time(hostile, kind: str, strategy: str):
    """pts that go backwards (bad composition offsets), a stream starting at -1.5 s, variable frame rate: each
    sample is the frame on screen at its planned time by FFmpeg's best-effort timestamps, inside its clip."""
    info, clips, units = units_for(hostile[kind], clip_seconds=0.5, sampling=SamplingConfig(frames_per_clip=3))
    reference = best_effort_reference(hostile[kind])
    decoded = [d for u in units for d in decode_unit(u, SPEC, strategy=strategy)]
    assert [d.clip for d in decoded] == clips
    for d in decoded:
        assert list(d.frame_times_s) == sorted(d.frame_times_s)
        if kind != "vfr_mp4":  # a VFR frame on screen at a clip's first sample may have started before the clip
            assert d.clip.start_s - 1e-6 <= d.frame_times_s[0] and d.frame_times_s[-1] < d.clip.end_s
        for t, got, shown in zip(d.clip.sample_times_s, d.frames, d.frame_times_s):
            want_time, want = on_screen(reference, info.start_s + t, 0.5 / info.fps)
            assert shown == pytest.approx(want_time - info.start_s, abs=1e-6)
            assert np.array_equal(got, want), (d.clip.clip_index, t)


def test_damaged_packets_are_skipped_and_the_undamaged_clips_kept(hostile):
    """20 KB of random bytes in the middle of a 10 s file: packets the codec rejects are skipped, decoding
    resumes at the next decodable frame, a sample whose frame is lost takes the nearest decodable frame of its
    clip. Nothing raises."""
    info, clips, units = units_for(hostile["damaged_middle"], clip_seconds=2.0, sampling=SamplingConfig(frames_per_clip=8))
    stats = DecodeStats()
    decoded = [d for u in units for d in decode_unit(u, SPEC, stats=stats)]
    assert [d.clip for d in decoded] == clips and len(clips) == 5
    assert all(d.error is None for d in decoded)
    assert stats.rejected_packets > 0 and stats.damaged_samples > 0
    damaged = [d for d in decoded if d.damaged_frames]
    assert [d.clip.clip_index for d in damaged] == [2]  # 4-6 s holds the damage
    for d in decoded:
        assert d.clip.start_s <= d.frame_times_s[0] and d.frame_times_s[-1] < d.clip.end_s
    reference = dict(best_effort_reference(hostile["damaged_middle"]))
    for d in decoded:  # every frame is a decodable frame of the file, at its recorded time
        for got, t in zip(d.frames, d.frame_times_s):
            assert any(abs(r - t) < 1e-6 for r in reference)
            if not 4.5 <= t < 6.0:  # P-frames of a GOP whose keyframe was lost look as the decoder left them
                assert np.array_equal(got, reference[t])


def test_a_clip_without_any_decodable_frame_is_lost_alone(hostile):
    """Frames 4.6-5.4 s of the damaged file do not decode: a clip inside that stretch comes back as an error with
    its range; the clips around it decode."""
    path = hostile["damaged_middle"]
    info = probe_video(str(path))
    plans = [(4.0, 4.5, (4.0, 4.2, 4.4)), (4.6, 5.4, (4.8, 5.0, 5.2)), (5.5, 6.0, (5.6, 5.8))]
    clips = tuple(ClipPlan(i, f"c{i}", s, e, t) for i, (s, e, t) in enumerate(plans))
    unit = WorkUnit(str(path), "v", 0, info.start_s, info.keyframe_interval_s, clips)
    decoded = list(decode_unit(unit, SPEC))
    assert [d.clip.clip_id for d in decoded] == ["c0", "c1", "c2"]
    assert decoded[0].error is None and decoded[2].error is None and decoded[2].frame_times_s == pytest.approx((5.6, 5.8))
    assert "no decodable frame in 4.600-5.400 s" in decoded[1].error and len(decoded[1].frames) == 0


def test_a_video_whose_audio_runs_longer_decodes_every_planned_clip(hostile):
    _, clips, units = units_for(hostile["audio_longer_than_video"], clip_seconds=2.0)
    assert len(clips) == 2
    assert [d.clip for u in units for d in decode_unit(u, SPEC)] == clips
