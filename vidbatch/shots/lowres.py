"""Decode every frame of a video once at 48x27 RGB: the input of every shot detector (TransNetV2's own size).

The frames come out in chunks as they are decoded, so a detector can consume a video of any length in flat memory
(a frame is 3.9 KB, an hour at 25 fps 350 MB); `decode_lowres_timed` gathers them for short videos and tests.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from vidbatch.core.container import decodable_frames, open_container, open_video_stream
from vidbatch.core.errors import DecodeError

WIDTH, HEIGHT = 48, 27
CHUNK_FRAMES = 250  # frames per yielded chunk: 1 MB, large enough that per-chunk numpy work is amortised


def iter_lowres(
    uri: str, threads: int = 0, storage_options: dict[str, Any] | None = None, chunk_frames: int = CHUNK_FRAMES
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(n, 27, 48, 3) uint8 RGB chunks of all decodable frames in presentation order, scaled in libswscale (bicubic,
    like the `ffmpeg -s 48x27` TransNetV2's reference extraction uses), each with (n,) float64: each frame's
    best-effort presentation time in seconds from the first frame, so shots on variable-frame-rate video get their
    real times. Display rotation is ignored: cuts do not depend on it. Packets the codec rejects are skipped, as in
    decoding. A decode failure raises DecodeError after the chunks already yielded."""
    reformatter = VideoReformatter()
    frames: list[np.ndarray] = []
    times: list[float] = []
    n_done, first, latest, last_raw = 0, None, -np.inf, None

    def chunk() -> tuple[np.ndarray, np.ndarray]:
        nonlocal latest
        relative = np.maximum.accumulate(np.asarray([latest, *times], np.float64))[1:]
        latest = relative[-1]
        out = np.stack(frames), relative - first
        frames.clear()
        times.clear()
        return out

    try:
        with open_container(uri, storage_options) as container:
            stream = open_video_stream(container, threads)
            step = 1 / float(stream.average_rate or stream.guessed_rate or 25)
            for timed in decodable_frames(container, stream):
                small = reformatter.reformat(timed.frame, width=WIDTH, height=HEIGHT, format="rgb24", interpolation="BICUBIC")
                frames.append(small.to_ndarray())
                # a frame without any timestamp is one frame after the one before it
                last_raw = timed.time if timed.time is not None else (last_raw + step if last_raw is not None else 0.0)
                times.append(last_raw)
                first = last_raw if first is None else first
                if len(frames) == chunk_frames:
                    n_done += len(frames)
                    yield chunk()
    except av.FFmpegError as e:
        raise DecodeError(f"{type(e).__name__}: {e} (after {n_done + len(frames)} frames)") from e
    if frames:
        yield chunk()
    elif not n_done:
        raise DecodeError("no decodable video frame")


def decode_lowres_timed(
    uri: str, threads: int = 0, storage_options: dict[str, Any] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """All of `iter_lowres` in two arrays: frames (N, 27, 48, 3) and times (N,)."""
    chunks = list(iter_lowres(uri, threads, storage_options))
    return np.concatenate([f for f, _ in chunks]), np.concatenate([t for _, t in chunks])


def decode_lowres(uri: str, threads: int = 0, storage_options: dict[str, Any] | None = None) -> np.ndarray:
    """The frames of `decode_lowres_timed`, without their times."""
    return decode_lowres_timed(uri, threads, storage_options)[0]
