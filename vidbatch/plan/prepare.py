"""Probe a listed video and plan its clips and work units: the per-video step before decoding."""
from __future__ import annotations

import json
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

    def to_json(self) -> str:
        return json.dumps(
            {
                "source": self.source.to_dict(),
                "info": self.info.to_dict() if self.info else None,
                "units": [u.to_dict() for u in self.units],
                "error": self.error.to_dict() if self.error else None,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> PreparedVideo:
        d = json.loads(text)
        return cls(
            source=VideoSource(**d["source"]),
            info=VideoInfo(**d["info"]) if d["info"] else None,
            units=tuple(WorkUnit.from_dict(u) for u in d["units"]),
            error=ErrorRow(**d["error"]) if d["error"] else None,
        )


@dataclass(frozen=True)
class PrepareStage:
    """`source_json` row in, `prepared_json` row out. A video that cannot be probed or planned (a broken or lying
    file, too many clips, over the time budget) becomes one `probe` error row, never a crash or a stall."""

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
            info = retry.call(self.retry, probe_video, source.uri, self.storage_options, self.retry, source.size, deadline)
            check_clip_count(info.duration_s, self.clips, self.limits.max_clips_per_video)
            clips = plan_clips(info, source.fingerprint, self.clips, self.sampling)
            units = plan_work_units(source.uri, source.video_id, info, clips, self.unit_seconds)
            deadline.check("planning clips")
        except Exception as e:  # noqa: BLE001 - whatever a hostile file makes probing or planning raise is data
            return PreparedVideo(source, info, (), ErrorRow.from_exception(uri=source.uri, stage="probe", exc=e))
        return PreparedVideo(source, info, tuple(units), None)

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        source = VideoSource(**json.loads(row["source_json"]))
        return {"prepared_json": self.prepare(source).to_json()}
