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
