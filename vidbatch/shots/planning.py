"""Clips that follow shots: the same ClipPlan objects as fixed windows, so decoding and inference do not change.

A shot shorter than min_clip_seconds is merged into its shorter neighbour (a one-second clip of a 0.2-s flash is
noise for most models); a shot longer than max_clip_seconds is split into equal windows (a 10-minute static shot
would otherwise be one clip with 8 samples). Equal windows of a split are longer than max/2 >= min (validated).
"""
from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pyarrow as pa

from vidbatch.config import ClipConfig, SamplingConfig
from vidbatch.core.errors import ErrorRow
from vidbatch.core.schema import SHOTS
from vidbatch.plan.clips import EPS, ClipPlan, plan_work_units, plans_for_windows
from vidbatch.plan.prepare import PreparedVideo
from vidbatch.plan.probe import VideoInfo
from vidbatch.shots.registry import Shot


def shot_span_s(
    shot: Shot, fps: float, duration_s: float, frame_times: Sequence[float] | None = None
) -> tuple[float, float]:
    """A shot's time range: from its first frame to the end of its last (where the next frame begins). With
    frame_times (each frame's presentation time, from the decode), those times; without, index / fps."""
    if frame_times is None or len(frame_times) == 0:
        return shot.start_frame / fps, min((shot.end_frame + 1) / fps, duration_s)
    start = float(frame_times[min(shot.start_frame, len(frame_times) - 1)])
    end = float(frame_times[shot.end_frame + 1]) if shot.end_frame + 1 < len(frame_times) else duration_s
    return min(start, duration_s), min(end, duration_s)


def _merge_short(spans: list[tuple[float, float]], min_s: float) -> list[tuple[float, float]]:
    spans = list(spans)
    while len(spans) > 1:
        lengths = [b - a for a, b in spans]
        i = min(range(len(spans)), key=lambda k: lengths[k])
        if lengths[i] >= min_s - EPS:
            break
        # the shorter neighbour absorbs it (the previous one on a tie, or when there is no next)
        j = i - 1 if i + 1 == len(spans) or (i > 0 and lengths[i - 1] <= lengths[i + 1]) else i + 1
        lo, hi = min(i, j), max(i, j)
        spans[lo : hi + 1] = [(spans[lo][0], spans[hi][1])]
    return spans


def _split_long(span: tuple[float, float], max_s: float) -> list[tuple[float, float]]:
    start, end = span
    n = max(1, math.ceil((end - start) / max_s - EPS))
    step = (end - start) / n
    return [(start + k * step, end if k == n - 1 else start + (k + 1) * step) for k in range(n)]


def shot_windows(
    shots: list[Shot], fps: float, duration_s: float, min_s: float, max_s: float, frame_times: Sequence[float] | None = None
) -> list[tuple[float, float]]:
    spans = [s for s in (shot_span_s(shot, fps, duration_s, frame_times) for shot in shots) if s[1] - s[0] > EPS]
    return [w for span in _merge_short(spans, min_s) for w in _split_long(span, max_s)]


def plan_shot_clips(
    info: VideoInfo, fingerprint: str, shots: list[Shot], clip_cfg: ClipConfig, sampling: SamplingConfig,
    frame_times: Sequence[float] | None = None,
) -> list[ClipPlan]:
    windows = shot_windows(shots, info.fps, info.duration_s, clip_cfg.min_clip_seconds, clip_cfg.max_clip_seconds, frame_times)
    return plans_for_windows(info, fingerprint, windows, sampling)


def shots_from_json(text: str) -> list[Shot]:
    return [Shot(**d) for d in json.loads(text)]


def replan_with_shots(
    prepared: list[PreparedVideo], results: list[dict[str, Any]], clip_cfg: ClipConfig, sampling: SamplingConfig,
    unit_seconds: float, detector: str, run_id: str,
) -> tuple[pa.Table, list[PreparedVideo]]:
    """Driver side: shot-stage result rows -> the shots/ table, and every probed video re-planned with clips that
    follow its shots (a video whose shot stage failed keeps no units and carries the error)."""
    by_video = {json.loads(r["video_json"])["video_id"]: r for r in results}
    rows: list[dict[str, Any]] = []
    updated = []
    for p in prepared:
        if p.info is None or p.error is not None:
            updated.append(p)
            continue
        result = by_video[p.source.video_id]  # every probed video went through the shot stage
        if result["error_json"]:
            updated.append(replace(p, units=(), error=ErrorRow(**json.loads(result["error_json"]))))
            continue
        shots = shots_from_json(result["shots_json"])
        times = np.frombuffer(result.get("frame_times") or b"", np.float64)
        for i, shot in enumerate(shots):
            start_s, end_s = shot_span_s(shot, p.info.fps, p.info.duration_s, times)
            rows.append({
                "video_id": p.source.video_id, "shot_index": i, "start_s": start_s, "end_s": end_s,
                "start_frame": shot.start_frame, "end_frame": shot.end_frame, "boundary_score": shot.boundary_score,
                "detector": detector, "run_id": run_id,
            })
        clips = plan_shot_clips(p.info, p.source.fingerprint, shots, clip_cfg, sampling, times)
        units = plan_work_units(p.source.uri, p.source.video_id, p.info, clips, unit_seconds)
        updated.append(replace(p, units=tuple(units)))
    return pa.Table.from_pylist(rows, schema=SHOTS), updated
