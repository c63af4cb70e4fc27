"""Decode every frame of a video once at 48x27 RGB: the input of every shot detector (TransNetV2's own size).

A frame is 3.9 KB at this size, so a whole hour at 25 fps is 350 MB: decoding a video once and handing the
detector all of it is cheaper than any windowed re-decode.
"""
from __future__ import annotations

from typing import Any

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from vidbatch.core.container import open_container, open_video_stream
from vidbatch.core.errors import DecodeError

WIDTH, HEIGHT = 48, 27


def decode_lowres(uri: str, threads: int = 0, storage_options: dict[str, Any] | None = None) -> np.ndarray:
    """(N, 27, 48, 3) uint8 RGB, all frames in presentation order, scaled in libswscale (bicubic, like the
    `ffmpeg -s 48x27` TransNetV2's reference extraction uses). Display rotation is ignored: cuts do not depend on it."""
    reformatter = VideoReformatter()
    frames: list[np.ndarray] = []
    try:
        with open_container(uri, storage_options) as container:
            stream = open_video_stream(container, threads)
            for frame in container.decode(stream):
                small = reformatter.reformat(frame, width=WIDTH, height=HEIGHT, format="rgb24", interpolation="BICUBIC")
                frames.append(small.to_ndarray())
    except av.FFmpegError as e:
        raise DecodeError(f"{type(e).__name__}: {e} (after {len(frames)} frames)") from e
    if not frames:
        raise DecodeError("no decodable video frame")
    return np.stack(frames)
