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

from vidbatch.core.container import (
    PacketLog,
    TimedFrame,
    decodable_frames,
    open_container,
    open_video_stream,
)
from vidbatch.core.errors import DecodeError
from vidbatch.decode.thumbnails import encode_thumbnail, thumbnail_slot
from vidbatch.plan.clips import ClipPlan, WorkUnit
from vidbatch.plan.frame_plan import FrameSpec


@dataclass(frozen=True)
class DecodedClip:
    clip: ClipPlan
    frames: np.ndarray  # (k, crop, crop, 3) uint8 RGB; (0, crop, crop, 3) when the clip is lost (error)
    frame_times_s: tuple[float, ...]  # actual presentation times of the kept frames, relative to the first frame
    source_wh: tuple[int, int] = (0, 0)  # upright (display-rotated) source frame size
    thumbnail: bytes | None = None  # JPEG of the middle sampled frame, uncropped (when asked for)
    damaged_frames: int = 0  # samples whose own frame did not decode (a nearby one of the clip stands in) or is repaired
    error: str | None = None  # the clip has no decodable frame at all: why (it is a `DamagedClip` error row)


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
    rejected_packets: int = 0  # packets the codec rejected (damaged data), skipped
    damaged_samples: int = 0  # samples served by a stand-in frame, or by a partly repaired one
    lost_clips: int = 0  # clips without any decodable frame


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

    The frame kept for a target time is the one on screen at that time by FFmpeg's best-effort timestamps (pts,
    or dts where pts go backwards): the last frame whose time is not after it (within half a frame). Packets the
    codec rejects are skipped; a sample whose frame was lost to them takes the nearest decodable frame inside its
    clip, and a clip without any is yielded with `error` set and no frames. Raises DecodeError when the stream
    ends (or breaks) before a planned sample (a truncated file); clips already yielded stay valid.
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
    damaged = [0] * len(unit.clips)
    lost = [False] * len(unit.clips)
    next_clip = 0
    log = PacketLog()

    reformatter = VideoReformatter()
    thumb_reformatter = VideoReformatter()  # its own swscale context: thumbnails have another output size
    source_wh = (0, 0)
    # a frame kept for several targets (the job's samples and a task's own) is converted once
    last_frame: av.VideoFrame | None = None
    last_array = np.empty(0, np.uint8)

    def keep(chosen: TimedFrame, target: _Target, stand_in: bool) -> None:
        nonlocal last_frame, last_array, source_wh
        frame = chosen.frame
        if frame is not last_frame:
            last_frame, last_array = frame, frame_to_array(frame, spec, reformatter)
            turned = int(frame.rotation or 0) % 180 == 90
            source_wh = (frame.height, frame.width) if turned else (frame.width, frame.height)
        kept[target.clip_pos][target.slot] = last_array
        times[target.clip_pos][target.slot] = chosen.time - unit.start_offset_s
        remaining[target.clip_pos] -= 1
        stats.kept_frames += 1
        if stand_in or frame.is_corrupt:
            damaged[target.clip_pos] += 1
            stats.damaged_samples += 1
        if thumbnail_width and target.slot == thumbnail_slot(len(kept[target.clip_pos])):
            thumbs[target.clip_pos] = encode_thumbnail(frame, thumbnail_width, thumb_reformatter)

    def in_clip(candidate: TimedFrame | None, target: _Target) -> bool:
        clip = unit.clips[target.clip_pos]
        return candidate is not None and unit.start_offset_s + clip.start_s - tol <= candidate.time < unit.start_offset_s + clip.end_s

    def serve_across_damage(target: _Target, before: TimedFrame | None, after: TimedFrame | None) -> None:
        """The target's own frame was lost to damaged packets: the nearest decodable frame inside its clip (the
        one before the damage or the one after it), or no frame at all and the clip is lost."""
        inside = [c for c in (before, after) if in_clip(c, target)]
        if not inside:
            lost[target.clip_pos] = True
            remaining[target.clip_pos] -= 1
            return
        best = min(inside, key=lambda c: abs(c.time - target.time))
        keep(best, target, stand_in=not (best is before and target.time - best.time <= 2 * tol))

    def finished_clips() -> Iterator[DecodedClip]:
        nonlocal next_clip
        while next_clip < len(unit.clips) and remaining[next_clip] == 0:
            clip = unit.clips[next_clip]
            if lost[next_clip]:
                stats.lost_clips += 1
                why = f" ({log.rejected} packets rejected, last: {log.last_error})" if log.last_error else ""
                yield DecodedClip(
                    clip, np.zeros((0, spec.crop, spec.crop, 3), np.uint8), (), source_wh, None, damaged[next_clip],
                    error=f"no decodable frame in {clip.start_s:.3f}-{clip.end_s:.3f} s{why}",
                )
            else:
                yield DecodedClip(
                    clip, np.stack(kept[next_clip]), tuple(times[next_clip]), source_wh, thumbs[next_clip], damaged[next_clip]
                )
            kept[next_clip] = []
            next_clip += 1

    try:
        with open_container(unit.uri, storage_options) as container:
            stream = open_video_stream(container, threads)
            tol = 0.5 / float(stream.average_rate or stream.guessed_rate or 25)
            threshold = SEEK_THRESHOLDS[strategy](unit.keyframe_interval_s, tol)
            from_start = True  # decoding from the first frame: nothing earlier exists to seek back to

            def decode_from(t: float) -> Iterator[TimedFrame]:
                nonlocal from_start
                from_start = t <= unit.start_offset_s + tol
                if from_start and stream.start_time is not None:
                    # a second before the stream's own first timestamp: 0 lands 1.5 s into an MPEG-TS that starts at
                    # -1.5 s, and the first timestamp itself lands on the second keyframe of an MPEG-TS with B-frames
                    container.seek(stream.start_time - round(1 / stream.time_base), stream=stream, backward=True)
                else:
                    container.seek(0 if from_start else int(t / stream.time_base), stream=None if from_start else stream, backward=True)
                stats.seeks += 1
                log.since_frame = 0
                return decodable_frames(container, stream, log)

            def decode_further_back(t: float) -> Iterator[TimedFrame]:
                """After a seek that landed past `t` (inexact seeking: MPEG-TS, some MKV) or at the end: aim further back."""
                nonlocal back
                back = max(2 * back, unit.keyframe_interval_s, 1.0)
                return decode_from(t - back)

            first = targets[0].time if targets else unit.start_offset_s
            seek_first = first - unit.start_offset_s > SEEK_THRESHOLDS["auto"](unit.keyframe_interval_s, tol)
            frames: Iterator[TimedFrame] = decode_from(first) if seek_first else decodable_frames(container, stream, log)
            prev: TimedFrame | None = None
            back = 0.0  # how far before a target the current seek aimed, after a seek that landed past it
            decide = False  # seek decisions happen only after a target is served, so a long GOP cannot cause a seek loop
            ti = 0
            while ti < len(targets):
                target = targets[ti]
                if decide and prev is not None and target.time - prev.time > threshold:
                    frames, prev = decode_from(target.time), None
                decide = False
                current = next(frames, None)
                if current is None and prev is None and not from_start:
                    frames = decode_further_back(target.time)
                    continue
                if current is None:
                    # the stream ended: a sample within a frame of the last decodable frame, or whose packets were
                    # there but did not decode, is served as above; one past the stream's data means a cut-off file
                    reached = max(log.last_packet_time if log.rejected else -math.inf, prev.time if prev else -math.inf)
                    while ti < len(targets):
                        target = targets[ti]
                        if prev is not None and target.time <= prev.time + 2 * tol:
                            keep(prev, target, stand_in=False)
                        elif target.time <= reached + 2 * tol or (log.since_frame and in_clip(prev, target)):
                            serve_across_damage(target, prev, None)
                        else:
                            break
                        ti += 1
                    yield from finished_clips()
                    if ti < len(targets):
                        shown = f"last frame at {prev.time - unit.start_offset_s:.3f}s" if prev else "no frame"
                        raise DecodeError(
                            f"stream ended ({shown}) before the sample at {targets[ti].time - unit.start_offset_s:.3f}s"
                        )
                    return
                if current.time is None:
                    continue
                stats.decoded_frames += 1
                t = current.time
                if prev is None and t > target.time + tol and not from_start:
                    frames = decode_further_back(target.time)
                    continue
                back = 0.0
                while ti < len(targets) and t > targets[ti].time + tol:
                    if current.after_damage:
                        serve_across_damage(targets[ti], prev, current)
                    else:  # prev is None only for a target before the stream's first frame
                        keep(prev if prev is not None else current, targets[ti], stand_in=False)
                    ti += 1
                    decide = True
                prev = current
                yield from finished_clips()
            yield from finished_clips()
    except av.FFmpegError as e:
        raise DecodeError(f"{type(e).__name__}: {e}") from e
    finally:
        stats.rejected_packets += log.rejected
