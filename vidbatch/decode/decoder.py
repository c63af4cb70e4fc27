"""Decode the planned sample frames of one work unit with PyAV.

Frames are decoded in order and only the kept ones are converted (RGB conversion and scaling cost more than
decoding). Seeking happens only across gaps longer than a keyframe interval, where it skips whole GOPs;
otherwise decoding through is faster than seeking on long-GOP files.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from vidbatch.core.container import open_container, open_video_stream
from vidbatch.core.errors import DecodeError
from vidbatch.decode.thumbnails import encode_thumbnail, thumbnail_slot
from vidbatch.plan.clips import ClipPlan, WorkUnit
from vidbatch.plan.frame_plan import FrameSpec


@dataclass(frozen=True)
class DecodedClip:
    clip: ClipPlan
    frames: np.ndarray  # (k, crop, crop, 3) uint8 RGB
    frame_times_s: tuple[float, ...]  # actual presentation times of the kept frames, relative to the first frame
    source_wh: tuple[int, int] = (0, 0)  # upright (display-rotated) source frame size
    thumbnail: bytes | None = None  # JPEG of the middle sampled frame, uncropped (when asked for)


def frame_to_array(frame: av.VideoFrame, spec: FrameSpec, reformatter: VideoReformatter | None = None) -> np.ndarray:
    """Scale and convert one frame in libswscale, undo display rotation, centre-crop to spec.crop.

    Pass one reformatter for all frames of a stream: it keeps the swscale context instead of rebuilding it.
    """
    rotation = int(frame.rotation or 0) % 360
    w, h = (frame.height, frame.width) if rotation in (90, 270) else (frame.width, frame.height)
    sw, sh = spec.scaled_size(w, h)
    if rotation in (90, 270):
        sw, sh = sh, sw
    rgb = (reformatter or VideoReformatter()).reformat(
        frame, width=sw, height=sh, format="rgb24", interpolation="BILINEAR"
    ).to_ndarray()
    if rotation:
        # display matrix rotation is counter-clockwise
        rgb = np.rot90(rgb, k=rotation // 90)
    if spec.letterbox:
        canvas = np.zeros((spec.crop, spec.crop, 3), dtype=np.uint8)
        canvas[: rgb.shape[0], : rgb.shape[1]] = rgb
        return canvas
    top = (rgb.shape[0] - spec.crop) // 2
    left = (rgb.shape[1] - spec.crop) // 2
    return np.ascontiguousarray(rgb[top : top + spec.crop, left : left + spec.crop])


@dataclass(frozen=True)
class _Target:
    time: float  # absolute, on the file's clock
    clip_pos: int
    slot: int


@dataclass
class DecodeStats:
    """What decoding a unit cost: lets tests and benchmarks see whether it sought or decoded through."""

    seeks: int = 0
    decoded_frames: int = 0
    kept_frames: int = 0


# Gap to the next sample (seconds) beyond which seeking beats decoding through, per strategy.
# Every unit still starts with one seek to its first sample unless that lies within a keyframe interval of the start.
SEEK_THRESHOLDS: dict[str, Callable[[float, float], float]] = {
    "auto": lambda keyframe_interval, tol: max(keyframe_interval, tol),
    "seek": lambda keyframe_interval, tol: tol,
    "sequential": lambda keyframe_interval, tol: math.inf,
}


def decode_unit(
    unit: WorkUnit,
    spec: FrameSpec,
    strategy: Literal["auto", "sequential", "seek"] = "auto",
    threads: int = 0,
    storage_options: dict[str, Any] | None = None,
    stats: DecodeStats | None = None,
    thumbnail_width: int | None = None,
) -> Iterator[DecodedClip]:
    """Yield each clip of the unit as soon as its last sample is decoded; holds at most one clip's kept frames
    (more only when clips overlap). With thumbnail_width, each clip also gets a JPEG of its middle sample.

    The frame kept for a target time is the one on screen at that time: the last frame whose timestamp is not
    after it (within half a frame). Raises DecodeError when the stream ends or breaks before a planned sample
    (a truncated file); clips already yielded stay valid.
    """
    stats = stats if stats is not None else DecodeStats()
    targets = sorted(
        (_Target(unit.start_offset_s + t, ci, si) for ci, c in enumerate(unit.clips) for si, t in enumerate(c.sample_times_s)),
        key=lambda t: (t.time, t.clip_pos, t.slot),
    )
    remaining = [len(c.sample_times_s) for c in unit.clips]
    kept: list[list[np.ndarray | None]] = [[None] * n for n in remaining]
    times: list[list[float]] = [[0.0] * n for n in remaining]
    thumbs: list[bytes | None] = [None] * len(unit.clips)
    next_clip = 0

    reformatter = VideoReformatter()
    thumb_reformatter = VideoReformatter()  # its own swscale context: thumbnails have another output size
    source_wh = (0, 0)
    # a frame kept for several targets (the job's samples and a task's own) is converted once
    last_frame: av.VideoFrame | None = None
    last_array = np.empty(0, np.uint8)

    def keep(frame: av.VideoFrame, target: _Target) -> None:
        nonlocal last_frame, last_array, source_wh
        if frame is not last_frame:
            last_frame, last_array = frame, frame_to_array(frame, spec, reformatter)
            turned = int(frame.rotation or 0) % 180 == 90
            source_wh = (frame.height, frame.width) if turned else (frame.width, frame.height)
        kept[target.clip_pos][target.slot] = last_array
        times[target.clip_pos][target.slot] = float(frame.time) - unit.start_offset_s
        remaining[target.clip_pos] -= 1
        stats.kept_frames += 1
        if thumbnail_width and target.slot == thumbnail_slot(len(kept[target.clip_pos])):
            thumbs[target.clip_pos] = encode_thumbnail(frame, thumbnail_width, thumb_reformatter)

    def finished_clips() -> Iterator[DecodedClip]:
        nonlocal next_clip
        while next_clip < len(unit.clips) and remaining[next_clip] == 0:
            yield DecodedClip(
                unit.clips[next_clip], np.stack(kept[next_clip]), tuple(times[next_clip]), source_wh, thumbs[next_clip]
            )
            kept[next_clip] = []
            next_clip += 1

    with open_container(unit.uri, storage_options) as container:
        stream = open_video_stream(container, threads)
        tol = 0.5 / float(stream.average_rate or stream.guessed_rate or 25)
        threshold = SEEK_THRESHOLDS[strategy](unit.keyframe_interval_s, tol)
        from_start = True  # decoding from the first frame: nothing earlier exists to seek back to

        def decode_from(t: float) -> Iterator[av.VideoFrame]:
            nonlocal from_start
            from_start = t <= unit.start_offset_s + tol
            container.seek(0 if from_start else int(t / stream.time_base), stream=None if from_start else stream, backward=True)
            stats.seeks += 1
            return container.decode(stream)

        def decode_further_back(t: float) -> Iterator[av.VideoFrame]:
            """After a seek that landed past `t` (inexact seeking: MPEG-TS, some MKV) or at the end: aim further back."""
            nonlocal back
            back = max(2 * back, unit.keyframe_interval_s, 1.0)
            return decode_from(t - back)

        first = targets[0].time if targets else unit.start_offset_s
        seek_first = first - unit.start_offset_s > SEEK_THRESHOLDS["auto"](unit.keyframe_interval_s, tol)
        frames: Iterator[av.VideoFrame] = decode_from(first) if seek_first else container.decode(stream)
        prev: av.VideoFrame | None = None
        back = 0.0  # how far before a target the current seek aimed, after a seek that landed past it
        decide = False  # seek decisions happen only after a target is served, so a long GOP cannot cause a seek loop
        ti = 0
        try:
            while ti < len(targets):
                target = targets[ti]
                if decide and prev is not None and target.time - float(prev.time) > threshold:
                    frames, prev = decode_from(target.time), None
                decide = False
                frame = next(frames, None)
                if frame is None and prev is None and not from_start:
                    frames = decode_further_back(target.time)
                    continue
                if frame is None:
                    while ti < len(targets) and prev is not None and targets[ti].time <= float(prev.time) + 2 * tol:
                        keep(prev, targets[ti])
                        ti += 1
                    yield from finished_clips()
                    if ti < len(targets):
                        shown = f"last frame at {float(prev.time) - unit.start_offset_s:.3f}s" if prev else "no frame"
                        raise DecodeError(
                            f"stream ended ({shown}) before the sample at {targets[ti].time - unit.start_offset_s:.3f}s"
                        )
                    return
                if frame.time is None:
                    continue
                stats.decoded_frames += 1
                t = float(frame.time)
                if prev is None and t > target.time + tol and not from_start:
                    frames = decode_further_back(target.time)
                    continue
                back = 0.0
                while ti < len(targets) and t > targets[ti].time + tol:
                    # prev is None only for a target before the stream's first frame
                    keep(prev if prev is not None else frame, targets[ti])
                    ti += 1
                    decide = True
                prev = frame
                yield from finished_clips()
            yield from finished_clips()
        except av.FFmpegError as e:
            raise DecodeError(f"{type(e).__name__}: {e}") from e
