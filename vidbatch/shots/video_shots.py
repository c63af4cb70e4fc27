"""The shot detectors on their own, one video at a time and without Ray or an output table (`vidbatch shots`, like
PySceneDetect's `list-scenes`): decode at 48x27, detect, and give each shot its times on the video's frame grid."""
from __future__ import annotations

from typing import Any

import pyarrow as pa

from vidbatch.config import ShotsConfig
from vidbatch.plan.probe import probe_video
from vidbatch.shots.lowres import iter_lowres
from vidbatch.shots.planning import shot_span_s
from vidbatch.shots.stages import build_detector

VIDEO_SHOTS = pa.schema([
    pa.field("video_uri", pa.string(), nullable=False),
    pa.field("shot_index", pa.int32(), nullable=False),
    pa.field("start_s", pa.float64(), nullable=False),
    pa.field("end_s", pa.float64(), nullable=False),
    pa.field("length_s", pa.float64(), nullable=False),
    pa.field("start_frame", pa.int64(), nullable=False),
    pa.field("end_frame", pa.int64(), nullable=False),
    pa.field("boundary_score", pa.float32()),
    pa.field("detector", pa.string(), nullable=False),
])  # shots/'s columns (see vidbatch.core.schema.SHOTS) with the URI instead of ids, and the shot's length


def video_shots(uri: str, cfg: ShotsConfig, threads: int = 0, storage_options: dict[str, Any] | None = None) -> pa.Table:
    """The shots of one video; probe and decode errors propagate (the caller reports them per video)."""
    info = probe_video(uri, storage_options)
    frames = (chunk for chunk, _ in iter_lowres(uri, threads, storage_options))
    rows = []
    for i, shot in enumerate(build_detector(cfg).detect(frames)):
        start_s, end_s = shot_span_s(shot, info.fps, info.duration_s)
        rows.append({
            "video_uri": uri, "shot_index": i, "start_s": start_s, "end_s": end_s, "length_s": end_s - start_s,
            "start_frame": shot.start_frame, "end_frame": shot.end_frame, "boundary_score": shot.boundary_score,
            "detector": cfg.detector,
        })
    return pa.Table.from_pylist(rows, schema=VIDEO_SHOTS)
