"""Columnar batches passed between stages, and the decode stage that produces them.

A frames batch holds B clips: `frames` (B, K, H, W, 3) uint8 padded to the job's K, `n_frames` (B,),
the clip key columns and error columns. A failed work unit travels as a row with `error_stage` set and
no frames, so failures reach the driver through the same stream as results.
"""
from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from vidbatch.config import RetryConfig
from vidbatch.core.errors import DamagedClip, ErrorRow
from vidbatch.core.faults import is_systemic
from vidbatch.core.retry import backoff_s, is_transient
from vidbatch.core.schema import (
    CLIP_KEY_FIELDS,
    RESULT_DAMAGE_FIELD,
    RESULT_ERROR_FIELDS,
    THUMBNAIL_FIELD,
)
from vidbatch.decode.decoder import DecodedClip, decode_unit
from vidbatch.plan.clips import ClipPlan, WorkUnit
from vidbatch.plan.frame_plan import FrameLayout, FrameSpec

Batch = dict[str, np.ndarray]


_DEFAULTS = {pa.string(): "", pa.int32(): -1, pa.float64(): 0.0}
# per-clip scalar columns of a frames batch, with the value an error row or a missing field gets
_SCALAR_COLUMNS = [
    *((f.name, _DEFAULTS[f.type]) for f in [*CLIP_KEY_FIELDS, *RESULT_ERROR_FIELDS] if f.type in _DEFAULTS),
    (RESULT_DAMAGE_FIELD.name, 0),
]


def frames_batch(rows: list[dict[str, Any]], k: int, spec: FrameSpec, thumbnails: bool = False) -> Batch:
    """Clip rows (frames as (n, H, W, 3) arrays) or error rows into one frames batch padded to k frames.

    thumbnails: carry each row's JPEG (b"" when it has none), in every batch of the job so all blocks share columns.
    """
    b = len(rows)
    frames = np.zeros((b, k, spec.crop, spec.crop, 3), dtype=np.uint8)
    times = np.zeros((b, k), dtype=np.float64)
    n_frames = np.zeros(b, dtype=np.int32)
    source_wh = np.zeros((b, 2), dtype=np.int32)
    for i, r in enumerate(rows):
        if r.get("frames") is not None:
            n = len(r["frame_times_s"])  # the shared samples; tasks' own samples sit in later slots
            frames[i, : len(r["frames"])] = r["frames"]
            times[i, :n] = r["frame_times_s"]
            n_frames[i] = n
            source_wh[i] = r.get("source_wh", (0, 0))
    batch: Batch = {"frames": frames, "frame_times_s": times, "n_frames": n_frames, "source_wh": source_wh}
    for name, default in _SCALAR_COLUMNS:
        batch[name] = np.array([default if r.get(name) is None else r[name] for r in rows])
    if thumbnails:
        batch[THUMBNAIL_FIELD.name] = np.array([r.get("thumbnail") or b"" for r in rows], dtype=object)
    return batch


def _clip_row(unit: WorkUnit, decoded: DecodedClip, layout: FrameLayout | None) -> dict[str, Any]:
    c = decoded.clip
    frames, times = (decoded.frames, decoded.frame_times_s) if layout is None else layout.place(decoded.frames, decoded.frame_times_s)
    return {
        "video_id": unit.video_id, "video_uri": unit.uri, "clip_id": c.clip_id, "clip_index": c.clip_index,
        "start_s": c.start_s, "end_s": c.end_s, "frames": frames, "frame_times_s": times, "source_wh": decoded.source_wh,
        "thumbnail": decoded.thumbnail, RESULT_DAMAGE_FIELD.name: decoded.damaged_frames,
    }


def _error_row(unit: WorkUnit, failed: list[ClipPlan], exc: BaseException) -> dict[str, Any]:
    err = ErrorRow.from_exception(uri=unit.uri, stage="decode", exc=exc, video_id=unit.video_id)
    return {
        "video_id": unit.video_id, "video_uri": unit.uri, "clip_id": failed[0].clip_id, "clip_index": failed[0].clip_index,
        "start_s": failed[0].start_s, "end_s": failed[-1].end_s, **err.result_columns(),
    }


@dataclass(frozen=True)
class DecodeStage:
    """Work-unit rows in (`unit_json`), one frames batch per decoded clip out; Ray-free."""

    spec: FrameSpec
    strategy: Literal["auto", "sequential", "seek"]
    threads: int  # 0: FFmpeg's choice
    samples_per_clip: int  # every slot of the frame axis: layout.total when tasks sample their own frames
    storage_options: dict[str, Any] | None = None
    retry: RetryConfig = field(default_factory=RetryConfig)
    thumbnail_width: int | None = None  # None: no thumbnails
    layout: FrameLayout | None = None  # tasks' own sample times, decoded in the same pass

    def __call__(self, batch: Batch) -> Iterator[Batch]:
        for payload in batch["unit_json"]:
            for row in self._unit_rows(WorkUnit.from_dict(json.loads(payload))):
                yield frames_batch([row], self.samples_per_clip, self.spec, self.thumbnail_width is not None)

    def _unit_rows(self, unit: WorkUnit) -> Iterator[dict[str, Any]]:
        """Clip rows in order; a transient store failure resumes after the last clip yielded (up to retry.attempts
        tries), a failure of the file becomes one error row for the clips not yet decoded, a bug ends the run."""
        done, attempt = 0, 1
        while done < len(unit.clips):
            rest = replace(unit, clips=unit.clips[done:])
            planned = rest if self.layout is None else self.layout.with_task_samples(rest)
            clips = decode_unit(
                planned, self.spec, self.strategy, self.threads, self.storage_options, thumbnail_width=self.thumbnail_width
            )
            try:
                while done < len(unit.clips):
                    try:
                        decoded = next(clips)
                    except Exception as e:  # noqa: BLE001 - a broken file is an error row; the run goes on
                        if is_systemic(e):
                            raise
                        if is_transient(e) and attempt < self.retry.attempts:
                            time.sleep(backoff_s(self.retry, attempt))
                            attempt += 1
                            break
                        yield _error_row(unit, list(unit.clips[done:]), e)
                        return
                    if decoded.error is None:
                        yield _clip_row(unit, decoded, self.layout)
                    else:  # no decodable frame in this clip: it alone is lost, the unit goes on
                        yield _error_row(unit, [decoded.clip], DamagedClip(decoded.error))
                    done += 1
            finally:
                clips.close()


def result_table(batch: Batch, schema: pa.Schema, task_columns: dict[str, list]) -> pa.Table:
    """Drop frames; keep clip keys, error columns and the tasks' columns (None on error rows), plus the
    thumbnail column when the decode stage made one."""
    n = len(batch["clip_id"])
    ok = batch["error_stage"] == ""
    times = [batch["frame_times_s"][i, : batch["n_frames"][i]].tolist() for i in range(n)]
    columns: dict[str, Any] = {
        "video_id": batch["video_id"], "video_uri": batch["video_uri"], "clip_id": batch["clip_id"],
        "clip_index": batch["clip_index"].astype(np.int32), "start_s": batch["start_s"], "end_s": batch["end_s"],
        "frame_times_s": times,
    }
    for f in RESULT_ERROR_FIELDS:
        columns[f.name] = [v or None for v in batch[f.name].tolist()]
    columns[RESULT_DAMAGE_FIELD.name] = batch.get(RESULT_DAMAGE_FIELD.name, np.zeros(n, np.int32)).astype(np.int32)
    key_names = {f.name for f in CLIP_KEY_FIELDS} | {f.name for f in RESULT_ERROR_FIELDS} | {RESULT_DAMAGE_FIELD.name}
    for f in schema:
        if f.name in key_names:
            continue
        values = iter(task_columns.get(f.name, []))
        columns[f.name] = [next(values) if good else None for good in ok] if f.name in task_columns else [None] * n
    arrays = []
    for f in schema:
        col = columns[f.name]
        if pa.types.is_list(f.type) and f.type.value_type == pa.float32():  # numpy rows (embeddings, scores)
            arrays.append(pa.array([None if v is None else np.asarray(v, np.float32) for v in col], type=f.type))
        else:
            arrays.append(pa.array(col, type=f.type))
    table = pa.Table.from_arrays(arrays, schema=schema)
    if THUMBNAIL_FIELD.name in batch and THUMBNAIL_FIELD.name not in schema.names:
        thumbs = [bytes(v) if v else None for v in batch[THUMBNAIL_FIELD.name]]
        table = table.append_column(THUMBNAIL_FIELD, pa.array(thumbs, pa.binary()))
    return table
