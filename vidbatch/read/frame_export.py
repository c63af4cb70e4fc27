"""`vidbatch export-frames`: frames of the committed videos as JPEG files `<video>/<time>.jpg`, plus `index.csv`.

`thumbnails` writes the clips' stored thumbnails and decodes nothing. `every` (one frame every S seconds) and
`shots` (the middle frame of each stored shot) decode the frames on screen at those times with the job's own
decoder (decode_unit over a plan of one-sample clips), and encode the whole upright frame as the job encodes
thumbnails. DIR is a local directory or any fsspec URL (s3://...).
"""
from __future__ import annotations

import csv
import io
import math
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from vidbatch.config import RetryConfig
from vidbatch.core.errors import DecodeError
from vidbatch.core.storage import OutputStore
from vidbatch.decode.decoder import decode_unit
from vidbatch.decode.thumbnails import thumbnail_slot
from vidbatch.plan.clips import EPS, ClipPlan, WorkUnit
from vidbatch.plan.frame_plan import FrameSpec
from vidbatch.plan.probe import probe_video
from vidbatch.store.committed import table_dataset

INDEX = "index.csv"
INDEX_COLUMNS = ("video_id", "video_uri", "time_s", "file", "clip_id", "shot_index")
FULL_WIDTH = 1 << 16  # thumbnail width that keeps every frame at its own size (thumbnails are never upscaled)
SMALLEST_SPEC = FrameSpec(resize_short=16, crop=16)  # the decoder's model input, unused here: as cheap as can be


@dataclass(frozen=True)
class FrameRequest:
    video_id: str
    video_uri: str
    time_s: float  # wanted, seconds from the first frame
    clip_id: str | None = None
    shot_index: int | None = None


@dataclass
class ExportResult:
    rows: list[dict[str, Any]] = field(default_factory=list)  # index.csv rows
    errors: list[str] = field(default_factory=list)  # one line per video that could not be exported


def _table(out: str, name: str, columns: list[str], storage_options: dict[str, Any] | None, why: str) -> pa.Table:
    ds = table_dataset(out, name, storage_options)
    if ds is None or not set(columns) <= set(ds.schema.names):
        raise ValueError(f"{out}: no {name} table with {', '.join(columns)} ({why})")
    return ds.to_table(columns=columns)


def video_dirs(videos: dict[str, str]) -> dict[str, str]:
    """video_id -> directory name: the file's stem, with the video id when two exported videos share a stem."""
    stems = {vid: PurePosixPath(uri.rstrip("/")).stem or vid for vid, uri in videos.items()}
    taken = Counter(stems.values())
    return {vid: s if taken[s] == 1 else f"{s}-{vid}" for vid, s in stems.items()}


def frame_file(directory: str, time_s: float) -> str:
    """`<video>/<time>.jpg`, the time in seconds with millisecond precision, zero-padded so names sort by time."""
    return f"{directory}/{time_s:09.3f}.jpg"


def _videos(out: str, storage_options: dict[str, Any] | None) -> dict[str, str]:
    clips = _table(out, "clips", ["video_id", "video_uri"], storage_options, "no video has been processed")
    unique = clips.group_by(["video_id", "video_uri"]).aggregate([])
    return dict(zip(unique["video_id"].to_pylist(), unique["video_uri"].to_pylist()))


def _every(out: str, storage_options: dict[str, Any] | None, seconds: float) -> Iterator[FrameRequest]:
    if not seconds > 0:
        raise ValueError(f"--every {seconds}: must be above 0")
    durations = _table(out, "videos", ["video_id", "duration_s"], storage_options, "no run has committed")
    duration = dict(zip(durations["video_id"].to_pylist(), durations["duration_s"].to_pylist()))
    for vid, uri in sorted(_videos(out, storage_options).items(), key=lambda v: v[1]):
        n = math.ceil((duration.get(vid) or 0.0) / seconds - EPS)
        yield from (FrameRequest(vid, uri, k * seconds) for k in range(max(n, 1)))


def _shots(out: str, storage_options: dict[str, Any] | None, _: float | None) -> Iterator[FrameRequest]:
    shots = _table(
        out, "shots", ["video_id", "shot_index", "start_s", "end_s"], storage_options, "run the job with clips.clip_mode: shots"
    )
    uris = _videos(out, storage_options)
    for s in shots.sort_by([("video_id", "ascending"), ("shot_index", "ascending")]).to_pylist():
        if s["video_id"] in uris:
            yield FrameRequest(s["video_id"], uris[s["video_id"]], (s["start_s"] + s["end_s"]) / 2, shot_index=s["shot_index"])


def _decoded(
    requests: list[FrameRequest], storage_options: dict[str, Any] | None, retry: RetryConfig
) -> Iterator[tuple[FrameRequest, float, bytes]]:
    """(request, time of the frame on screen then, its JPEG), through the job's decoder: each time is a one-sample
    clip of one work unit, on the video's frame grid as the job plans samples."""
    info = probe_video(requests[0].video_uri, storage_options, retry)
    wanted = sorted(requests, key=lambda r: r.time_s)
    last = max(0.0, info.duration_s - 1 / info.fps)
    times = [min(last, math.floor(r.time_s * info.fps + EPS) / info.fps) for r in wanted]
    plans = tuple(ClipPlan(i, f"export-{i}", t, t, (t,)) for i, t in enumerate(times))
    unit = WorkUnit(wanted[0].video_uri, wanted[0].video_id, 0, info.start_s, info.keyframe_interval_s, plans)
    for decoded in decode_unit(unit, SMALLEST_SPEC, storage_options=storage_options, thumbnail_width=FULL_WIDTH):
        # a one-sample clip's thumbnail is that sample: the whole upright frame at its own size
        yield wanted[decoded.clip.clip_index], decoded.frame_times_s[0], decoded.thumbnail


def _write(target: OutputStore, dirs: dict[str, str], r: FrameRequest, time_s: float, jpeg: bytes) -> dict[str, Any]:
    file = target.write_bytes(frame_file(dirs[r.video_id], time_s), jpeg)
    return {"video_id": r.video_id, "video_uri": r.video_uri, "time_s": round(time_s, 6), "file": file,
            "clip_id": r.clip_id, "shot_index": r.shot_index}


def export_thumbnails(out: str, target: OutputStore, storage_options: dict[str, Any] | None) -> ExportResult:
    clips = _table(
        out, "clips", ["video_id", "video_uri", "clip_id", "frame_times_s", "thumbnail"], storage_options,
        "thumbnails are stored with out.thumbnails: true",
    )
    clips = clips.filter(pc.is_valid(clips["thumbnail"]))
    dirs = video_dirs(dict(zip(clips["video_id"].to_pylist(), clips["video_uri"].to_pylist())))
    result = ExportResult()
    for c in clips.sort_by([("video_uri", "ascending"), ("clip_id", "ascending")]).to_pylist():
        time_s = c["frame_times_s"][thumbnail_slot(len(c["frame_times_s"]))]  # the frame the job encoded
        request = FrameRequest(c["video_id"], c["video_uri"], time_s, clip_id=c["clip_id"])
        result.rows.append(_write(target, dirs, request, time_s, c["thumbnail"]))
    return result


def export_decoded(
    requests: Iterator[FrameRequest], target: OutputStore, storage_options: dict[str, Any] | None,
    retry: RetryConfig | None = None,
) -> ExportResult:
    by_video: dict[str, list[FrameRequest]] = {}
    for r in requests:
        by_video.setdefault(r.video_id, []).append(r)
    dirs = video_dirs({vid: rs[0].video_uri for vid, rs in by_video.items()})
    result = ExportResult()
    for wanted in by_video.values():
        try:
            for request, time_s, jpeg in _decoded(wanted, storage_options, retry or RetryConfig()):
                result.rows.append(_write(target, dirs, request, time_s, jpeg))
        except (DecodeError, OSError) as e:  # a video that changed or went since the run: the others go on
            result.errors.append(f"{wanted[0].video_uri}: {type(e).__name__}: {e}")
    return result


ExportMode = Callable[[str, OutputStore, dict[str, Any] | None, float | None], ExportResult]


def _thumbnails_mode(out: str, target: OutputStore, storage_options: dict[str, Any] | None, _: float | None) -> ExportResult:
    return export_thumbnails(out, target, storage_options)


def _decoding_mode(requests: Callable[[str, dict[str, Any] | None, float | None], Iterator[FrameRequest]]) -> ExportMode:
    def export(out: str, target: OutputStore, storage_options: dict[str, Any] | None, every_s: float | None) -> ExportResult:
        return export_decoded(requests(out, storage_options, every_s), target, storage_options)

    return export


# mode -> how it finds and writes its frames (every_s: the --every interval)
EXPORT_MODES: dict[str, ExportMode] = {
    "thumbnails": _thumbnails_mode, "every": _decoding_mode(_every), "shots": _decoding_mode(_shots),
}


def export_frames(
    out: str, to: str, mode: str, every_s: float | None = None, storage_options: dict[str, Any] | None = None,
    to_options: dict[str, Any] | None = None,
) -> ExportResult:
    """mode: a key of EXPORT_MODES. Writes the JPEGs, then DIR/index.csv (one row per file, sorted by file)."""
    if mode not in EXPORT_MODES:
        raise ValueError(f"mode {mode!r}: choose one of {', '.join(EXPORT_MODES)}")
    target = OutputStore(to, to_options)
    result = EXPORT_MODES[mode](out, target, storage_options, every_s)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(INDEX_COLUMNS), lineterminator="\n")
    writer.writeheader()
    writer.writerows(sorted(result.rows, key=lambda r: r["file"]))
    target.write_bytes(INDEX, buffer.getvalue().encode())
    return result
