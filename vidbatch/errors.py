"""Errors are data: a stage that fails on one input returns an ErrorRow instead of raising through Ray."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from vidbatch.ids import video_id_for

Stage = Literal["list", "probe", "plan", "decode", "infer", "write"]
MAX_MESSAGE_CHARS = 2000


class DecodeError(RuntimeError):
    """The container opened but did not yield the frames its header promised (truncated or damaged stream)."""


@dataclass(frozen=True)
class ErrorRow:
    uri: str
    stage: Stage
    error_type: str
    message: str
    video_id: str | None = None
    clip_id: str | None = None
    start_s: float | None = None
    end_s: float | None = None

    @classmethod
    def from_exception(cls, *, uri: str, stage: Stage, exc: BaseException, **where: Any) -> ErrorRow:
        message = str(exc) or repr(exc)
        where["video_id"] = where.get("video_id") or video_id_for(uri)
        return cls(uri=uri, stage=stage, error_type=type(exc).__name__, message=message[:MAX_MESSAGE_CHARS], **where)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
