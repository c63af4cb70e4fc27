"""Decode the planned sample frames of one work unit with PyAV.

Frames are decoded in order and only the kept ones are converted (RGB conversion and scaling cost more than
decoding). Seeking happens only across gaps longer than a keyframe interval, where it skips whole GOPs;
otherwise decoding through is faster than seeking on long-GOP files.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import av
import numpy as np

from vidbatch.clips import ClipPlan, WorkUnit
from vidbatch.container import open_container
from vidbatch.errors import DecodeError


@dataclass(frozen=True)
class FrameSpec:
    """How a kept frame is turned into model input: scale the short side (in libswscale), then centre-crop."""

    resize_short: int
    crop: int

    def scaled_size(self, width: int, height: int) -> tuple[int, int]:
        scale = self.resize_short / min(width, height)
        return max(self.crop, round(width * scale)), max(self.crop, round(height * scale))


DEFAULT_FRAME_SPEC = FrameSpec(resize_short=256, crop=224)  # ImageNet's classic preprocessing


@dataclass(frozen=True)
class DecodedClip:
    clip: ClipPlan
    frames: np.ndarray  # (k, crop, crop, 3) uint8 RGB
    frame_times_s: tuple[float, ...]  # actual presentation times of the kept frames, relative to the first frame


def frame_to_array(frame: av.VideoFrame, spec: FrameSpec) -> np.ndarray:
    """Scale and convert one frame in libswscale, undo display rotation, centre-crop to spec.crop."""
    rotation = int(frame.rotation or 0) % 360
    w, h = (frame.height, frame.width) if rotation in (90, 270) else (frame.width, frame.height)
    sw, sh = spec.scaled_size(w, h)
    if rotation in (90, 270):
        sw, sh = sh, sw
    rgb = frame.reformat(width=sw, height=sh, format="rgb24", interpolation="BILINEAR").to_ndarray()
    if rotation:
        # display matrix rotation is counter-clockwise
        rgb = np.rot90(rgb, k=rotation // 90)
    top = (rgb.shape[0] - spec.crop) // 2
    left = (rgb.shape[1] - spec.crop) // 2
    return np.ascontiguousarray(rgb[top : top + spec.crop, left : left + spec.crop])


@dataclass(frozen=True)
class _Target:
    time: float  # absolute, on the file's clock
    clip_pos: int
    slot: int


def _should_seek(strategy: str, gap_s: float | None, keyframe_interval_s: float, tol: float) -> bool:
    """gap_s: distance from the last decoded frame to the next target (None before the first decode)."""
    if gap_s is None:
        return True
    if strategy == "seek":
        return gap_s > tol
    if strategy == "auto":
        return gap_s > max(keyframe_interval_s, tol)
    return False


def decode_unit(
    unit: WorkUnit,
    spec: FrameSpec,
    strategy: Literal["auto", "sequential", "seek"] = "auto",
    threads: int = 0,
    storage_options: dict[str, Any] | None = None,
) -> Iterator[DecodedClip]:
    """Yield each clip of the unit as soon as its last sample is decoded; holds at most one clip's kept frames
    (more only when clips overlap).

    The frame kept for a target time is the one on screen at that time: the last frame whose timestamp is not
    after it. Raises DecodeError when the stream ends or breaks before a planned sample (a truncated file);
    clips already yielded stay valid.
    """
    targets = sorted(
        (_Target(unit.start_offset_s + t, ci, si) for ci, c in enumerate(unit.clips) for si, t in enumerate(c.sample_times_s)),
        key=lambda t: (t.time, t.clip_pos, t.slot),
    )
    remaining = [len(c.sample_times_s) for c in unit.clips]
    kept: list[list[np.ndarray | None]] = [[None] * n for n in remaining]
    times: list[list[float]] = [[0.0] * n for n in remaining]
    next_clip = 0

    def keep(frame: av.VideoFrame, target: _Target) -> None:
        kept[target.clip_pos][target.slot] = frame_to_array(frame, spec)
        times[target.clip_pos][target.slot] = float(frame.time) - unit.start_offset_s
        remaining[target.clip_pos] -= 1

    def finished_clips() -> Iterator[DecodedClip]:
        nonlocal next_clip
        while next_clip < len(unit.clips) and remaining[next_clip] == 0:
            yield DecodedClip(unit.clips[next_clip], np.stack(kept[next_clip]), tuple(times[next_clip]))
            kept[next_clip] = []
            next_clip += 1

    with open_container(unit.uri, storage_options) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        if threads:
            stream.codec_context.thread_count = threads
        tol = 0.5 / float(stream.average_rate or stream.guessed_rate or 25)
        frames: Iterator[av.VideoFrame] = iter(())
        prev: av.VideoFrame | None = None
        decide = True  # seek decisions happen only after a target is served, so a long GOP cannot cause a seek loop
        ti = 0
        try:
            while ti < len(targets):
                if decide:
                    decide = False
                    gap = None if prev is None else targets[ti].time - float(prev.time)
                    if _should_seek(strategy, gap, unit.keyframe_interval_s, tol):
                        container.seek(max(0, int(targets[ti].time / stream.time_base)), stream=stream, backward=True)
                        frames = container.decode(stream)
                        prev = None
                frame = next(frames, None)
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
                while ti < len(targets) and float(frame.time) > targets[ti].time + tol:
                    keep(prev if prev is not None else frame, targets[ti])
                    ti += 1
                    decide = True
                prev = frame
                yield from finished_clips()
            yield from finished_clips()
        except av.FFmpegError as e:
            raise DecodeError(f"{type(e).__name__}: {e}") from e
