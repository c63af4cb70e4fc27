"""Probe a video with PyAV: the metadata clip planning needs, and proof that its first frame decodes."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import Any

from vidbatch.config import RetryConfig
from vidbatch.core.container import open_container
from vidbatch.core.errors import DecodeError

KEYFRAME_SCAN_PACKETS = 600


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


def _keyframe_interval(container: Any, stream: Any) -> float:
    """Largest gap between keyframes over the first packets (a lower bound when only one keyframe is seen)."""
    key_times: list[float] = []
    last_time = 0.0
    for n, packet in enumerate(container.demux(stream)):
        if packet.pts is None:
            continue
        last_time = float(packet.pts * packet.time_base)
        if packet.is_keyframe:
            key_times.append(last_time)
        if n >= KEYFRAME_SCAN_PACKETS or len(key_times) >= 4:
            break
    key_times.append(last_time)
    gaps = [b - a for a, b in zip(key_times, key_times[1:])]
    return max(gaps, default=0.0)


def probe_video(uri: str, storage_options: dict[str, Any] | None = None, retry_cfg: RetryConfig | None = None) -> VideoInfo:
    with open_container(uri, storage_options, retry_cfg) as container:
        if not container.streams.video:
            raise DecodeError("no video stream")
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        if not rate:
            raise DecodeError("video stream has no frame rate")
        fps = float(rate)
        tb = stream.time_base or Fraction(1, 1_000_000)
        start_s = float(stream.start_time * tb) if stream.start_time is not None else 0.0
        if stream.duration:
            duration_s = float(stream.duration * tb)
        elif container.duration:
            duration_s = container.duration / 1_000_000 - start_s
        else:
            raise DecodeError("duration unknown")
        frame_count = stream.frames or round(duration_s * fps)
        keyframe_interval_s = _keyframe_interval(container, stream)
        container.seek(0)
        first = next(container.decode(stream), None)
        if first is None:
            raise DecodeError("no decodable video frame")
        if first.time is not None:
            start_s = float(first.time)
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
            keyframe_interval_s=keyframe_interval_s,
        )
