"""Decode every frame of a video once at 48x27 RGB: the input of every shot detector (TransNetV2's own size).

A frame is 3.9 KB at this size, so a whole hour at 25 fps is 350 MB: decoding a video once and handing the
detector all of it is cheaper than any windowed re-decode.
"""
from __future__ import annotations

from typing import Any

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from vidbatch.core.container import decodable_frames, open_container, open_video_stream
from vidbatch.core.errors import DecodeError

WIDTH, HEIGHT = 48, 27


def decode_lowres_timed(
    uri: str, threads: int = 0, storage_options: dict[str, Any] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(N, 27, 48, 3) uint8 RGB, all decodable frames in presentation order, scaled in libswscale (bicubic, like
    the `ffmpeg -s 48x27` TransNetV2's reference extraction uses), and (N,) float64: each frame's best-effort
    presentation time in seconds from the first frame, so shots on variable-frame-rate video get their real times.
    Display rotation is ignored: cuts do not depend on it. Packets the codec rejects are skipped, as in decoding."""
    reformatter = VideoReformatter()
    frames: list[np.ndarray] = []
    times: list[float] = []
    try:
        with open_container(uri, storage_options) as container:
            stream = open_video_stream(container, threads)
            step = 1 / float(stream.average_rate or stream.guessed_rate or 25)
            for timed in decodable_frames(container, stream):
                small = reformatter.reformat(timed.frame, width=WIDTH, height=HEIGHT, format="rgb24", interpolation="BICUBIC")
                frames.append(small.to_ndarray())
                # a frame without any timestamp is one frame after the one before it
                times.append(timed.time if timed.time is not None else (times[-1] + step if times else 0.0))
    except av.FFmpegError as e:
        raise DecodeError(f"{type(e).__name__}: {e} (after {len(frames)} frames)") from e
    if not frames:
        raise DecodeError("no decodable video frame")
    relative = np.maximum.accumulate(np.asarray(times, np.float64)) - times[0]
    return np.stack(frames), relative


def decode_lowres(uri: str, threads: int = 0, storage_options: dict[str, Any] | None = None) -> np.ndarray:
    """The frames of `decode_lowres_timed`, without their times."""
    return decode_lowres_timed(uri, threads, storage_options)[0]
