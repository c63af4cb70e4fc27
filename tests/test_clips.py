from __future__ import annotations

import pytest

from vidbatch.config import ClipConfig, SamplingConfig
from vidbatch.plan.clips import clip_windows, plan_clips, plan_work_units
from vidbatch.plan.probe import VideoInfo


def info(duration: float, fps: float = 10.0, frames: int | None = None) -> VideoInfo:
    return VideoInfo(
        duration_s=duration, fps=fps, frame_count=frames if frames is not None else round(duration * fps),
        width=160, height=120, codec="h264", pix_fmt="yuv420p", rotation=0, has_audio=False, start_s=0.0,
        keyframe_interval_s=1.0,
    )


@pytest.mark.parametrize(
    ("duration", "cfg", "expected"),
    [
        (6.0, ClipConfig(clip_seconds=2), [(0, 2), (2, 4), (4, 6)]),
        (5.0, ClipConfig(clip_seconds=2), [(0, 2), (2, 4), (4, 5)]),
        (5.0, ClipConfig(clip_seconds=2, last_clip="drop"), [(0, 2), (2, 4)]),
        (5.0, ClipConfig(clip_seconds=2, last_clip="pad"), [(0, 2), (2, 4), (3, 5)]),
        (4.2, ClipConfig(clip_seconds=2), [(0, 2), (2, 4)]),  # 0.2 s tail < min_last_clip_seconds
        (4.2, ClipConfig(clip_seconds=2, min_last_clip_seconds=0), [(0, 2), (2, 4), (4, 4.2)]),
        (1.0, ClipConfig(clip_seconds=2), [(0, 1)]),  # a video shorter than a clip is one clip
        (1.0, ClipConfig(clip_seconds=2, last_clip="drop"), []),
        (1.0, ClipConfig(clip_seconds=2, last_clip="pad"), [(0, 1)]),
        (5.0, ClipConfig(clip_seconds=2, stride_seconds=1), [(0, 2), (1, 3), (2, 4), (3, 5)]),
        (3.0, ClipConfig(clip_seconds=1, stride_seconds=2), [(0, 1), (2, 3)]),
        (0.0, ClipConfig(clip_seconds=2), []),
    ],
)
def test_clip_windows(duration, cfg, expected):
    assert [(round(a, 9), round(b, 9)) for a, b in clip_windows(duration, cfg)] == [(float(a), float(b)) for a, b in expected]


def test_uniform_samples_are_centred_on_the_frame_grid():
    clips = plan_clips(info(4.0), "fp", ClipConfig(clip_seconds=2), SamplingConfig(frames_per_clip=4))
    assert [c.sample_times_s for c in clips] == [
        pytest.approx((0.2, 0.7, 1.2, 1.7)),
        pytest.approx((2.2, 2.7, 3.2, 3.7)),
    ]
    for c in clips:
        assert all(abs(t * 10 - round(t * 10)) < 1e-9 for t in c.sample_times_s)


def test_more_samples_than_frames_repeats_frames():
    (clip,) = plan_clips(info(0.3), "fp", ClipConfig(clip_seconds=2), SamplingConfig(frames_per_clip=6))
    assert clip.sample_times_s == pytest.approx((0.0, 0.0, 0.1, 0.1, 0.2, 0.2))


def test_sample_fps():
    clips = plan_clips(info(4.0, fps=25), "fp", ClipConfig(clip_seconds=2), SamplingConfig(sample_fps=2))
    # every 12.5 frames, snapped down to a real frame
    assert [c.sample_times_s for c in clips] == [
        pytest.approx((0.0, 0.48, 1.0, 1.48)),
        pytest.approx((2.0, 2.48, 3.0, 3.48)),
    ]


def test_samples_never_pass_the_last_frame():
    # header says 95 frames though duration x fps = 100: the grid stops at the real last frame
    clips = plan_clips(info(10.0, frames=95), "fp", ClipConfig(clip_seconds=2), SamplingConfig(frames_per_clip=8))
    assert max(t for c in clips for t in c.sample_times_s) <= 9.4 + 1e-9


def test_clip_ids_are_deterministic_and_depend_on_fingerprint():
    cfg, s = ClipConfig(clip_seconds=2), SamplingConfig()
    a = [c.clip_id for c in plan_clips(info(6.0), "fp1", cfg, s)]
    assert a == [c.clip_id for c in plan_clips(info(6.0), "fp1", cfg, s)]
    assert len(set(a)) == 3
    assert not set(a) & {c.clip_id for c in plan_clips(info(6.0), "fp2", cfg, s)}


def test_work_units_split_long_videos():
    clips = plan_clips(info(7200.0, fps=25), "fp", ClipConfig(clip_seconds=10), SamplingConfig(frames_per_clip=2))
    units = plan_work_units("v.mp4", "vid", info(7200.0, fps=25), clips, unit_seconds=60)
    assert len(units) == 120
    assert all(len(u.clips) == 6 for u in units)
    assert [c for u in units for c in u.clips] == clips
    assert len({u.unit_id for u in units}) == 120


def test_a_clip_longer_than_a_unit_is_its_own_unit():
    clips = plan_clips(info(300.0), "fp", ClipConfig(clip_seconds=100), SamplingConfig(frames_per_clip=2))
    units = plan_work_units("v.mp4", "vid", info(300.0), clips, unit_seconds=60)
    assert [len(u.clips) for u in units] == [1, 1, 1]


@pytest.mark.parametrize("sample_fps", [0.5, 2.0, 7.0, 30.0, 100.0])
@pytest.mark.parametrize("clip_seconds", [0.21, 1.0, 2.5])
@pytest.mark.parametrize("last_clip", ["keep", "pad"])
def test_samples_never_exceed_the_padded_frame_axis(sample_fps, clip_seconds, last_clip):
    from vidbatch.plan.clips import max_samples_per_clip

    cfg, sampling = ClipConfig(clip_seconds=clip_seconds, last_clip=last_clip, min_last_clip_seconds=0), SamplingConfig(sample_fps=sample_fps)
    k = max_samples_per_clip(cfg, sampling)
    for duration in (0.05, 0.3, 3.7, 10.0):
        for c in plan_clips(info(duration), "fp", cfg, sampling):
            assert 1 <= len(c.sample_times_s) <= k
            assert list(c.sample_times_s) == sorted(c.sample_times_s)


def test_sample_fps_above_the_video_rate_repeats_frames():
    (clip,) = plan_clips(info(0.21, frames=3), "fp", ClipConfig(clip_seconds=0.21), SamplingConfig(sample_fps=30))
    assert len(clip.sample_times_s) == 7 and set(clip.sample_times_s) == {0.0, 0.1, 0.2}
