"""Plan clips (fixed windows) and the frames sampled from each, then cut them into work units.

Sample times are snapped to the video's frame grid here, at planning time, so the decoder can return exactly
the planned frames and the output records times that are true frame timestamps.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from vidbatch.config import ClipConfig, SamplingConfig
from vidbatch.core.errors import TooManyClips
from vidbatch.core.ids import clip_id_for
from vidbatch.plan.probe import VideoInfo

EPS = 1e-6


@dataclass(frozen=True)
class ClipPlan:
    clip_index: int
    clip_id: str
    start_s: float  # relative to the first frame of the video
    end_s: float
    sample_times_s: tuple[float, ...]  # relative, on the frame grid, non-decreasing

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ClipPlan:
        return cls(**{**d, "sample_times_s": tuple(d["sample_times_s"])})


@dataclass(frozen=True)
class WorkUnit:
    """A time range of one video decoded by one task: keeps a 2-hour file from being one giant task."""

    uri: str
    video_id: str
    unit_index: int
    start_offset_s: float  # the video's first-frame time on the file's own clock
    keyframe_interval_s: float
    clips: tuple[ClipPlan, ...] = field(default_factory=tuple)
    # the source's coded size (0: unknown): what the decoder's own buffers cost (vidbatch.decode.memory)
    width: int = 0
    height: int = 0

    @property
    def unit_id(self) -> str:
        return f"{self.video_id}-{self.unit_index:05d}"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "clips": [c.to_dict() for c in self.clips]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> WorkUnit:
        return cls(**{**d, "clips": tuple(ClipPlan.from_dict(c) for c in d["clips"])})


def clip_windows(duration_s: float, cfg: ClipConfig) -> list[tuple[float, float]]:
    """Fixed windows over [0, duration_s] under the configured last-clip policy."""
    windows: list[tuple[float, float]] = []
    stride = cfg.stride
    start = 0.0
    i = 0
    while start < duration_s - EPS and not (windows and windows[-1][1] >= duration_s - EPS):
        end = start + cfg.clip_seconds
        if end <= duration_s + EPS:
            windows.append((start, min(end, duration_s)))
        else:
            if cfg.last_clip == "pad":
                padded = (max(0.0, duration_s - cfg.clip_seconds), duration_s)
                if not windows or abs(windows[-1][0] - padded[0]) > EPS:
                    windows.append(padded)
            elif cfg.last_clip == "keep" and (not windows or duration_s - start >= cfg.min_last_clip_seconds - EPS):
                windows.append((start, duration_s))
            break
        i += 1
        start = i * stride
    return windows


def check_clip_count(duration_s: float, cfg: ClipConfig, max_clips: int) -> None:
    """Refuse, before planning, a video that would plan more than max_clips fixed windows (counted, not walked)."""
    windows = math.ceil(max(0.0, duration_s - EPS) / cfg.stride)
    if windows > max_clips:
        raise TooManyClips(
            f"{duration_s:.6g} s in {cfg.clip_seconds:g} s clips every {cfg.stride:g} s would be {windows} clips, "
            f"over probe.max_clips_per_video ({max_clips})"
        )


def _frame_range(start_s: float, end_s: float, fps: float, total_frames: int) -> range:
    first = max(0, math.ceil(start_s * fps - EPS))
    stop = min(total_frames, math.ceil(end_s * fps - EPS))
    return range(first, stop)


def sample_frame_indices(frames: range, sampling: SamplingConfig, fps: float, span_s: float) -> list[int]:
    """Uniform (centred) frames_per_clip indices, or one frame per 1/sample_fps seconds of the clip's span
    (frames repeat when sample_fps exceeds the video's rate)."""
    n = len(frames)
    if n == 0:
        return []
    if sampling.sample_fps is not None:
        step = fps / sampling.sample_fps
        count = max(1, math.ceil(span_s * sampling.sample_fps - EPS))
        return [frames[min(n - 1, math.floor(j * step + EPS))] for j in range(count)]
    k = sampling.frames_per_clip or 1
    return [frames[math.floor((i + 0.5) * n / k)] for i in range(k)]


def plan_clips(info: VideoInfo, fingerprint: str, clip_cfg: ClipConfig, sampling: SamplingConfig) -> list[ClipPlan]:
    return plans_for_windows(info, fingerprint, clip_windows(info.duration_s, clip_cfg), sampling)


def plans_for_windows(
    info: VideoInfo, fingerprint: str, windows: list[tuple[float, float]], sampling: SamplingConfig
) -> list[ClipPlan]:
    """Clip plans for time windows (fixed ones or shots): samples on the frame grid, ids from the time range."""
    grid_frames = math.ceil(info.duration_s * info.fps - EPS)
    total_frames = min(info.frame_count, grid_frames) if info.frame_count else grid_frames
    plans = []
    for start_s, end_s in windows:
        indices = sample_frame_indices(
            _frame_range(start_s, end_s, info.fps, total_frames), sampling, info.fps, end_s - start_s
        )
        if not indices:
            continue
        plans.append(
            ClipPlan(
                clip_index=len(plans),
                clip_id=clip_id_for(fingerprint, start_s, end_s),
                start_s=start_s,
                end_s=end_s,
                sample_times_s=tuple(k / info.fps for k in indices),
            )
        )
    return plans


def plan_work_units(
    uri: str, video_id: str, info: VideoInfo, clips: list[ClipPlan], unit_seconds: float
) -> list[WorkUnit]:
    """Group consecutive clips into units spanning at most unit_seconds (at least one clip each)."""
    groups: list[list[ClipPlan]] = []
    for clip in clips:
        if groups and clip.end_s - groups[-1][0].start_s <= unit_seconds + EPS:
            groups[-1].append(clip)
        else:
            groups.append([clip])
    return [
        WorkUnit(
            uri=uri,
            video_id=video_id,
            unit_index=i,
            start_offset_s=info.start_s,
            keyframe_interval_s=info.keyframe_interval_s,
            clips=tuple(group),
            width=info.width,
            height=info.height,
        )
        for i, group in enumerate(groups)
    ]


MAX_SAMPLES_PER_CLIP = 512  # one clip's frames travel as one tensor: 512 x 224 x 224 x 3 is 77 MB


def max_samples_per_clip(clip_cfg: ClipConfig, sampling: SamplingConfig) -> int:
    """K: the fixed frame axis every clip is padded to, so all blocks share one tensor shape."""
    if sampling.sample_fps is None:
        return sampling.frames_per_clip or 1
    return max(1, math.ceil(clip_cfg.longest_clip_seconds * sampling.sample_fps - EPS))
