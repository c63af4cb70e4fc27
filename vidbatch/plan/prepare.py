"""Probe a listed video and plan its clips and work units: the per-video step before decoding."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vidbatch.config import ClipConfig, ProbeConfig, RetryConfig, SamplingConfig
from vidbatch.core import retry
from vidbatch.core.deadline import Deadline
from vidbatch.core.errors import ErrorRow
from vidbatch.plan.clips import WorkUnit, check_clip_count, plan_clips, plan_work_units
from vidbatch.plan.listing import VideoSource
from vidbatch.plan.probe import VideoInfo, probe_video


@dataclass(frozen=True)
class PreparedVideo:
    source: VideoSource
    info: VideoInfo | None
    units: tuple[WorkUnit, ...]
    error: ErrorRow | None


@dataclass(frozen=True)
class PrepareStage:
    """A source in, its probe result and planned units out (vidbatch.store.plans stages them). A video that cannot
    be probed or planned (a broken or lying file, too many clips, over the time budget) becomes one `probe` error
    row, never a crash or a stall."""

    clips: ClipConfig
    sampling: SamplingConfig
    unit_seconds: float
    storage_options: dict[str, Any] | None = None
    retry: RetryConfig = field(default_factory=RetryConfig)
    limits: ProbeConfig = field(default_factory=ProbeConfig)

    def prepare(self, source: VideoSource) -> PreparedVideo:
        deadline = Deadline(self.limits.timeout_s)
        info = None
        try:
            info = self.probe(source, deadline)
            check_clip_count(info.duration_s, self.clips, self.limits.max_clips_per_video)
            clips = plan_clips(info, source.fingerprint, self.clips, self.sampling)
            units = plan_work_units(source.uri, source.video_id, info, clips, self.unit_seconds)
            deadline.check("planning clips")
        except Exception as e:  # noqa: BLE001 - whatever a hostile file makes probing or planning raise is data
            return PreparedVideo(source, info, (), ErrorRow.from_exception(uri=source.uri, stage="probe", exc=e))
        return PreparedVideo(source, info, tuple(units), None)

    def probe(self, source: VideoSource, deadline: Deadline) -> VideoInfo:
        """The video's stream facts (benchmarks/plan_scale.py plans an archive from made-up ones)."""
        return retry.call(self.retry, probe_video, source.uri, self.storage_options, self.retry, source.size, deadline)
