"""Probe a video with PyAV: the metadata clip planning needs, and proof that its first frame decodes.

Archives hold files whose headers lie. The duration is the video stream's own (never the container's, which
covers the audio too), checked against the file: its frame count, its size (a claimed duration the bytes cannot
fill) and the timestamps of its last packets (one seek to the end, a few packets). A claim that fails the checks
is replaced by the real end read from the last packets; when neither is usable the video is one typed error
(the classes in vidbatch.core.errors), never a run planning 1e12 seconds of clips.
"""
from __future__ import annotations

import math
import re
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from typing import Any

import av

from vidbatch.config import RetryConfig
from vidbatch.core.container import BestEffortClock, open_container, seconds
from vidbatch.core.deadline import Deadline
from vidbatch.core.errors import (
    ImplausibleDuration,
    InvalidData,
    NoTimestamps,
    NoVideoStream,
    Unreadable,
)

KEYFRAME_SCAN_PACKETS = 600  # packets read from the start: keyframe gaps, timestamps, the first decodable frame
MIN_FPS = 1 / 60  # slower than a frame a minute is a broken clock (a zero MP4 timescale reads as 1/1024 fps)
MIN_BITS_PER_SECOND = 100  # a claimed duration the file's bytes cannot fill (even a still 16x16 video needs more)
MAX_DURATION_S = 31 * 24 * 3600.0
FRAME_COUNT_SLACK = 4  # the duration may differ from frames / fps by this factor (VFR, edit lists) before it is a lie
SEEK_TO_END = 2**62 // 1000  # "infinity" in any stream time base, for a backward seek to the last keyframe


@dataclass(frozen=True)
class VideoInfo:
    duration_s: float
    fps: float
    frame_count: int
    width: int
    height: int
    codec: str
    pix_fmt: str
    rotation: int
    has_audio: bool
    start_s: float  # presentation time of the first frame; clip times are relative to the file's clock
    keyframe_interval_s: float  # largest keyframe gap seen in the first packets; decides seek vs. decode-through

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Start:
    """What the first packets of the stream show."""

    keyframe_interval_s: float
    first: av.VideoFrame | None
    first_time: float | None  # best-effort time of the first decodable frame
    packets: int  # packets read (without the final flush packet)
    timed_packets: int  # of those, packets with a pts or dts
    distinct_times: int
    rejected: int  # packets the codec rejected before the first frame came out
    last_error: str | None


def _read_start(container: Any, stream: Any, deadline: Deadline) -> _Start:
    """One pass over the first packets: keyframe gaps (a lower bound when only one keyframe is seen), whether the
    packets carry timestamps, and the first frame that decodes (skipping packets the codec rejects)."""
    key_times: list[float] = []
    times: set[int] = set()
    last_time = 0.0
    first, first_time, clock = None, None, BestEffortClock()
    packets = timed = rejected = 0
    last_error = None
    demux = container.demux(stream)
    try:
        for packet in demux:
            deadline.check("reading the first packets")
            flush = packet.size == 0 and packet.pts is None and packet.dts is None
            if not flush:
                packets += 1
                ts = packet.pts if packet.pts is not None else packet.dts
                if ts is not None:
                    timed += 1
                    times.add(ts)
                if packet.pts is not None:
                    last_time = float(packet.pts * packet.time_base)
                    if packet.is_keyframe:
                        key_times.append(last_time)
            if first is None:
                try:
                    frames = packet.decode()
                except av.error.InvalidDataError as e:
                    rejected += 1
                    last_error = f"{type(e).__name__}: {e}"
                    frames = []
                if frames:
                    first = frames[0]
                    ts = clock(first.pts, first.dts)
                    first_time = None if ts is None else seconds(ts, stream.time_base)
            if first is not None and (packets >= KEYFRAME_SCAN_PACKETS or len(key_times) >= 4):
                break
            if packets >= 4 * KEYFRAME_SCAN_PACKETS:  # nothing decodes: enough evidence
                break
    finally:
        demux.close()
    key_times.append(last_time)
    gaps = [b - a for a, b in zip(key_times, key_times[1:])]
    return _Start(max(gaps, default=0.0), first, first_time, packets, timed, len(times), rejected, last_error)


def _last_packet_end(container: Any, stream: Any, deadline: Deadline, keyframe_interval_s: float) -> float | None:
    """The real end of the stream on the file's clock: the largest pts + duration among the packets after a seek to
    the last keyframe, then again from a little earlier (an inexact MPEG-TS seek lands on the very last packet,
    whose pts may be below a reordered frame's). None when the file cannot seek or no packet has a timestamp.

    One seek and a GOP of packets where the file has an index; a Matroska file without Cues is read through."""

    def end_after(offset: int) -> float | None:
        try:
            container.seek(offset, stream=stream, backward=True)
        except (av.FFmpegError, OSError):  # not seekable (a raw stream: PermissionError), or the seek failed
            deadline.check("seeking to the end")
            return None
        end = None
        try:
            for packet in container.demux(stream):
                deadline.check("reading the last packets")
                ts = packet.pts if packet.pts is not None else packet.dts
                if ts is not None:
                    e = float((ts + (packet.duration or 0)) * packet.time_base)
                    end = e if end is None else max(end, e)
        except av.FFmpegError:  # a damaged or cut-off tail: the packets read so far
            deadline.check("reading the last packets")
        return end

    end = end_after(SEEK_TO_END)
    if end is None:
        return None
    again = end_after(math.floor((end - max(2 * keyframe_interval_s, 1.0)) / stream.time_base))
    return end if again is None else max(end, again)


def _claimed_duration(stream: Any) -> float | None:
    """The video stream's own duration: its header field, or the Matroska muxer's per-track DURATION tag."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    tag = re.fullmatch(r"(\d+):(\d\d):(\d\d(?:\.\d*)?)", str(stream.metadata.get("DURATION", "")))
    if tag:
        h, m, s = tag.groups()
        return int(h) * 3600 + int(m) * 60 + float(s) or None
    return None


def implausible(duration_s: float | None, fps: float, frames: int, size_bytes: int | None) -> str | None:
    """Why this duration cannot be the stream's (None: it is plausible)."""
    if duration_s is None or not math.isfinite(duration_s) or duration_s <= 0:
        return f"duration {duration_s}"
    if duration_s > MAX_DURATION_S:
        return f"{duration_s:.4g} s is over {MAX_DURATION_S / 86400:g} days"
    if size_bytes and size_bytes * 8 / duration_s < MIN_BITS_PER_SECOND:
        return f"{size_bytes} bytes over {duration_s:.4g} s would be {size_bytes * 8 / duration_s:.2g} bit/s"
    if frames:
        expected = frames / fps
        if not expected / FRAME_COUNT_SLACK - 2 / fps <= duration_s <= expected * FRAME_COUNT_SLACK + 2 / fps:
            return f"{frames} frames at {fps:.4g} fps last {expected:.4g} s, not {duration_s:.4g} s"
    return None


def _duration(container: Any, stream: Any, fps: float, start: _Start, size_bytes: int | None, deadline: Deadline) -> float:
    claimed = _claimed_duration(stream)
    frames = stream.frames or 0
    claim_problem = implausible(claimed, fps, frames, size_bytes) if claimed is not None else "none in the header"
    end = _last_packet_end(container, stream, deadline, start.keyframe_interval_s)
    origin = start.first_time if start.first_time is not None else 0.0
    measured = None if end is None else end - origin
    measure_problem = implausible(measured, fps, frames, size_bytes) if measured is not None else "the end cannot be read"
    if claim_problem is None and (measure_problem is not None or abs(claimed - measured) <= 1.5 / fps):
        return claimed  # the header agrees with the packets within a frame (or the packets cannot tell)
    if measure_problem is None:
        return measured  # the real end, whatever the header claims
    if claim_problem is None:
        return claimed
    if claimed is None and measured is None and len(container.streams) == 1 and container.duration:
        return container.duration / 1_000_000  # no audio or other stream to inflate the container's duration
    if claimed is None and measured is None:
        raise NoTimestamps("duration unknown: none in the header, and the end of the stream cannot be read")
    raise ImplausibleDuration(f"claimed duration: {claim_problem}; from the last packets: {measure_problem}")


def probe_video(
    uri: str, storage_options: dict[str, Any] | None = None, retry_cfg: RetryConfig | None = None,
    size_bytes: int | None = None, deadline: Deadline | None = None,
) -> VideoInfo:
    """size_bytes (the listed size) lets the duration be checked against the file's bytes; deadline bounds the
    time spent (vidbatch.core.deadline)."""
    deadline = deadline if deadline is not None else Deadline(None)
    deadline.check("opening the file")
    with ExitStack() as stack:
        try:
            container = stack.enter_context(open_container(uri, storage_options, retry_cfg, deadline))
        except (av.error.InvalidDataError, EOFError) as e:
            deadline.check("opening the file")
            raise Unreadable(f"FFmpeg cannot open it as media ({type(e).__name__}: {e})") from e
        try:
            return _probe(container, size_bytes, deadline)
        except av.FFmpegError:
            deadline.check("reading the file")  # a PyAV timeout is the budget running out
            raise


def _probe(container: Any, size_bytes: int | None, deadline: Deadline) -> VideoInfo:
    if not container.streams.video:
        others = sorted({s.type for s in container.streams})
        raise NoVideoStream("no video stream" + (f" (only {', '.join(others)})" if others else ""))
    stream = container.streams.video[0]
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    if not rate or not stream.time_base:
        raise ImplausibleDuration("video stream has no frame rate")
    fps = float(rate)
    if fps < MIN_FPS:
        raise ImplausibleDuration(f"frame rate {rate} is one frame every {1 / fps:.4g} s: the stream's clock is broken")
    start = _read_start(container, stream, deadline)
    if start.packets and not start.timed_packets:
        raise NoTimestamps(f"the first {start.packets} video packets carry no timestamps (a raw stream without a container)")
    if start.first is None:
        why = f"the codec rejected {start.rejected} packets ({start.last_error})" if start.rejected else "no frame came out"
        raise InvalidData(f"no decodable video frame in the first {start.packets} packets: {why}")
    if start.timed_packets > 1 and start.distinct_times == 1:
        raise ImplausibleDuration(f"the first {start.timed_packets} video packets all have the same timestamp")
    duration_s = _duration(container, stream, fps, start, size_bytes, deadline)
    first = start.first
    tb = stream.time_base
    start_s = start.first_time if start.first_time is not None else float((stream.start_time or 0) * tb)
    frame_count = stream.frames or round(duration_s * fps)
    return VideoInfo(
        duration_s=duration_s,
        fps=fps,
        frame_count=int(frame_count),
        width=first.width,
        height=first.height,
        codec=stream.codec_context.name,
        pix_fmt=first.format.name,
        rotation=int(first.rotation or 0) % 360,
        has_audio=bool(container.streams.audio),
        start_s=start_s,
        keyframe_interval_s=start.keyframe_interval_s,
    )
