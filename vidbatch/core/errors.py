"""Errors are data: a stage that fails on one input returns an ErrorRow instead of raising through Ray.

This module is the one place error rows are built, carried between stages, merged and tabulated.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Literal, get_args

import pyarrow as pa

from vidbatch.core.ids import video_id_for
from vidbatch.core.schema import ERRORS

Stage = Literal["list", "probe", "decode", "infer"]
STAGE_ORDER = get_args(Stage)
MAX_MESSAGE_CHARS = 2000


class DecodeError(RuntimeError):
    """The container opened but did not yield the frames its header promised (truncated or damaged stream)."""


class InputError(DecodeError):
    """The file itself is unusable, in a way named by the class: its name is the error row's `error_type`."""


class Unreadable(InputError):
    """FFmpeg cannot open the file as media: empty, random bytes, text, an HTML page, a header cut off."""


class InvalidData(InputError):
    """The file opens, but the codec rejects the video data (no frame decodes)."""


class NoVideoStream(InputError):
    """The file holds no video stream (audio only, subtitles, data)."""


class NoTimestamps(InputError):
    """The video packets carry no timestamps and the file has no duration (a raw elementary stream)."""


class ImplausibleDuration(InputError):
    """The stream's clock is unusable: its duration, frame rate or timestamps contradict the file itself."""


class TooManyClips(InputError):
    """The video would plan more clips than `probe.max_clips_per_video`."""


class Timeout(InputError):
    """Probing and planning the video took longer than `probe.timeout_s`."""


class DamagedClip(InputError):
    """No frame inside the clip's time range could be decoded; the other clips of the video are kept."""


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

    def result_columns(self) -> dict[str, Any]:
        """The error columns of a row in the clip result stream (see schema.RESULT_ERROR_FIELDS)."""
        return {"error_stage": self.stage, "error_type": self.error_type, "error_message": self.message}

    @classmethod
    def from_result_row(cls, row: dict[str, Any]) -> ErrorRow:
        return cls(
            uri=row["video_uri"], stage=row["error_stage"], error_type=row["error_type"], message=row["error_message"],
            video_id=row["video_id"], clip_id=row["clip_id"], start_s=row["start_s"], end_s=row["end_s"],
        )


def is_damaged_clip(row: ErrorRow) -> bool:
    return row.error_type == DamagedClip.__name__


def merge_per_video(rows: list[ErrorRow]) -> list[ErrorRow]:
    """One row per failed input: the failure earliest in the video (then in the pipeline) names the type, message
    and first clip; start_s/end_s widen to cover every failure of that video. A damaged clip keeps a row of its
    own, with its time range (its video may still be ok)."""
    groups: dict[str, list[ErrorRow]] = {}
    damaged = [row for row in rows if is_damaged_clip(row)]
    for row in (r for r in rows if not is_damaged_clip(r)):
        groups.setdefault(row.video_id or video_id_for(row.uri), []).append(row)
    merged = []
    for group in groups.values():
        group.sort(key=lambda e: (e.start_s if e.start_s is not None else -1.0, STAGE_ORDER.index(e.stage)))
        first = group[0]
        if len(group) > 1:
            ends = [e.end_s for e in group if e.end_s is not None]
            first = replace(
                first,
                end_s=max(ends, default=first.end_s),
                message=f"{first.message} (and {len(group) - 1} more failures in this video)"[:MAX_MESSAGE_CHARS],
            )
        merged.append(first)
    return merged + damaged


def failed_videos(rows: list[ErrorRow], clips_written: dict[str, int]) -> set[str]:
    """Videos that failed: any error but a damaged clip, or damaged clips and no clip written at all."""
    return {
        r.video_id or video_id_for(r.uri) for r in rows
        if not is_damaged_clip(r) or not clips_written.get(r.video_id or video_id_for(r.uri))
    }


def errors_table(rows: list[ErrorRow], run_id: str) -> pa.Table:
    records = [
        {"video_id": e.video_id, "video_uri": e.uri, "stage": e.stage, "error_type": e.error_type, "message": e.message,
         "clip_id": e.clip_id, "start_s": e.start_s, "end_s": e.end_s, "run_id": run_id}
        for e in rows
    ]
    return pa.Table.from_pylist(records, schema=ERRORS)
