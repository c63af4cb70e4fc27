from __future__ import annotations

from pathlib import Path

import av
import pytest
from videos import make_video

from vidbatch.core.errors import DecodeError
from vidbatch.plan.probe import probe_video


def test_probe_reads_metadata(tmp_path: Path):
    path = make_video(tmp_path / "v.mp4", seconds=2.0, fps=25, width=128, height=96, gop=10)
    info = probe_video(str(path))
    assert (info.width, info.height, info.fps, info.frame_count) == (128, 96, 25.0, 50)
    assert info.duration_s == pytest.approx(2.0)
    assert info.codec == "h264" and not info.has_audio and info.rotation == 0
    assert info.keyframe_interval_s == pytest.approx(0.4)


@pytest.mark.parametrize("content", [b"", b"hello, not a video\n" * 50, b"\x00\x00\x00\x18ftypmp42" + bytes(3000)])
def test_unreadable_files_raise(tmp_path: Path, content: bytes):
    path = tmp_path / "bad.mp4"
    path.write_bytes(content)
    with pytest.raises((av.FFmpegError, DecodeError)):
        probe_video(str(path))


def test_audio_only_file_is_not_a_video(tmp_path: Path):
    import numpy as np

    path = tmp_path / "a.m4a"
    with av.open(str(path), "w") as out:
        s = out.add_stream("aac", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), dtype=np.float32), format="fltp", layout="mono")
        frame.sample_rate = 8000
        for p in [*s.encode(frame), *s.encode()]:
            out.mux(p)
    with pytest.raises(DecodeError, match="no video stream"):
        probe_video(str(path))


# ---------------------------------------------------------------- hostile files (tests/hostile_corpus.py)

PROBE_KINDS = [
    "plain_h264_mp4", "audio_longer_than_video", "lying_duration_1e12s", "webm_streamed_no_duration", "mpeg_ts",
    "mpeg_ts_pts_wrap", "mp4_editlist_delay_1s", "mpeg2_open_gop_ps", "nonmonotonic_pts", "empty_file", "random_bytes",
    "text_file", "html_error_page", "truncated_header", "audio_only", "raw_h264_annexb", "huge_claimed_resolution",
    "zero_timescale", "zero_frame_durations",
]


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from hostile_corpus import make_corpus

    return {f.kind: f for f in make_corpus(tmp_path_factory.mktemp("hostile-probe"), kinds=PROBE_KINDS)}


@pytest.mark.parametrize(
    ("kind", "seconds", "start_s"),
    [
        ("plain_h264_mp4", 3.0, 0.0),
        ("audio_longer_than_video", 4.0, 0.0),  # not the container's 5.464 s (the audio's)
        ("lying_duration_1e12s", 5.0, 0.0),  # not the header's 1e12 s: the real end, from the last packets
        ("webm_streamed_no_duration", 3.0, 0.0),  # no duration anywhere in the file
        ("mpeg_ts", 3.0, 10.0),
        ("mpeg_ts_pts_wrap", 3.0, -1.5),  # FFmpeg unwraps the 33-bit clock: the stream starts at -1.5 s
        ("mp4_editlist_delay_1s", 3.0, 1.0),
        ("mpeg2_open_gop_ps", 3.0, 0.54),
    ],
)
def test_duration_is_the_video_streams_real_length(hostile, kind: str, seconds: float, start_s: float):
    import time

    t = time.monotonic()
    info = probe_video(str(hostile[kind].path))
    assert time.monotonic() - t < 2.0
    assert info.duration_s == pytest.approx(seconds, abs=0.05)
    assert info.start_s == pytest.approx(start_s, abs=0.05)
    assert info.frame_count == pytest.approx(seconds * info.fps, abs=1)


@pytest.mark.parametrize(
    "kind",
    ["empty_file", "random_bytes", "text_file", "html_error_page", "truncated_header", "audio_only", "raw_h264_annexb",
     "huge_claimed_resolution", "zero_timescale", "zero_frame_durations"],
)
def test_unusable_files_raise_one_typed_error(hostile, kind: str):
    f = hostile[kind]
    with pytest.raises(DecodeError) as caught:
        probe_video(str(f.path))
    assert type(caught.value).__name__ == f.error_type, caught.value
    assert str(caught.value)


def test_implausible_durations_are_named():
    from vidbatch.plan.probe import implausible

    assert implausible(3.0, 10.0, 30, 31_000) is None
    assert "bit/s" in implausible(360_000.0, 10.0, 0, 52_000)  # 52 KB cannot fill 100 h
    assert "days" in implausible(1e12, 10.0, 0, 52_000)
    assert "30 frames at 10 fps last 3 s" in implausible(0.1, 10.0, 30, 31_000)
    assert "days" in implausible(1e9, 10.0, 0, 10**15)
    assert implausible(0.0, 10.0, 0, None) and implausible(float("nan"), 10.0, 0, None)


def test_prepare_turns_every_probe_or_plan_failure_into_one_row(hostile, monkeypatch):
    """A lying header plans 3 clips at once; a cap or a spent time budget is a typed row, and so is a crash of
    any kind inside probing or planning."""
    import time

    from vidbatch.config import ClipConfig, InputConfig, ProbeConfig, SamplingConfig
    from vidbatch.plan.listing import list_videos
    from vidbatch.plan.prepare import PrepareStage

    (lying,), _, _ = list_videos([str(hostile["lying_duration_1e12s"].path)], InputConfig())
    t = time.monotonic()
    ok = PrepareStage(ClipConfig(), SamplingConfig(), 60.0).prepare(lying)
    assert ok.error is None and sum(len(u.clips) for u in ok.units) == 3 and time.monotonic() - t < 2

    capped = PrepareStage(ClipConfig(), SamplingConfig(), 60.0, limits=ProbeConfig(max_clips_per_video=2)).prepare(lying)
    assert capped.error.error_type == "TooManyClips" and "3 clips, over probe.max_clips_per_video (2)" in capped.error.message
    assert capped.units == () and capped.info is not None

    clock = iter(range(0, 10**6, 10))  # every look at the clock: 10 s later
    monkeypatch.setattr("vidbatch.core.deadline._now", lambda: float(next(clock)))
    late = PrepareStage(ClipConfig(), SamplingConfig(), 60.0, limits=ProbeConfig(timeout_s=25)).prepare(lying)
    assert late.error.error_type == "Timeout" and "25 s budget (probe.timeout_s)" in late.error.message
    monkeypatch.undo()

    def broken_plan(*args, **kwargs):
        raise OverflowError("cannot convert float infinity to integer")

    monkeypatch.setattr("vidbatch.plan.prepare.plan_clips", broken_plan)
    crashed = PrepareStage(ClipConfig(), SamplingConfig(), 60.0).prepare(lying)
    assert crashed.error.stage == "probe" and crashed.error.error_type == "OverflowError"
