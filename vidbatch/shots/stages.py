"""The shot stages as plain callables: Ray runs the decode stage in tasks and the model stage in an actor pool;
tests call them directly.

Rows carry the frames as raw bytes (N x 27 x 48 x 3): one binary cell per video is the simplest shape Arrow moves
between Ray workers without per-frame overhead.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from vidbatch.config import ShotsConfig
from vidbatch.core.devices import pick_device
from vidbatch.core.errors import ErrorRow
from vidbatch.core.faults import is_systemic
from vidbatch.shots import ShotDetector, get_detector
from vidbatch.shots.lowres import HEIGHT, WIDTH, decode_lowres_timed


def build_detector(cfg: ShotsConfig) -> ShotDetector:
    cls = get_detector(cfg.detector)
    model_args = {"batch_size": cfg.batch_size, "device": cfg.device} if cls.needs_model else {}
    return cls(threshold=cfg.threshold, min_shot_frames=cfg.min_shot_frames, **model_args)


def _row(video: dict[str, Any], n_frames: int = 0, frames: bytes = b"", shots: list | None = None,
         error: ErrorRow | None = None, frame_times: bytes = b"") -> dict[str, Any]:
    """frame_times: each frame's time in seconds from the first, float64 bytes (shot times follow them)."""
    return {
        "video_json": json.dumps(video),
        "n_frames": n_frames,
        "frames": frames,
        "frame_times": frame_times,
        "shots_json": json.dumps([s.to_dict() for s in shots]) if shots is not None else "",
        "error_json": json.dumps(error.to_dict()) if error else "",
    }


@dataclass(frozen=True)
class ShotDecodeStage:
    """`video_json` ({uri, video_id}) in; the video's 48x27 frames out, or its shots when the detector needs no
    model (so frames never leave the task that decoded them). An unreadable video becomes a `decode` error."""

    shots: ShotsConfig
    threads: int = 1
    storage_options: dict[str, Any] | None = None

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        video = json.loads(row["video_json"])
        try:
            frames, times = decode_lowres_timed(video["uri"], self.threads, self.storage_options)
        except Exception as e:  # noqa: BLE001 - a broken video is data
            if is_systemic(e):
                raise
            return _row(video, error=ErrorRow.from_exception(uri=video["uri"], stage="decode", exc=e, video_id=video["video_id"]))
        if get_detector(self.shots.detector).needs_model:
            return _row(video, len(frames), frames.tobytes(), frame_times=times.tobytes())
        return _row(video, len(frames), shots=build_detector(self.shots).detect(frames), frame_times=times.tobytes())


class ShotModelActor:
    """Rows with frames in, rows with shots out; one model load per actor. A video the model fails on becomes an
    `infer` error; a bug, a CUDA error or out of memory goes on up (systemic)."""

    def __init__(self, shots: ShotsConfig):
        import torch  # here, not at the top: the decode stage above runs in decode tasks, which need no torch

        if pick_device(shots.device).type == "cpu":
            torch.set_num_threads(max(1, int(shots.num_cpus)))
        self.detector = build_detector(shots)

    def detect_row(self, row: dict[str, Any]) -> dict[str, Any]:
        video = json.loads(row["video_json"])
        if row["error_json"] or row["shots_json"]:
            return {**row, "frames": b""}
        try:
            frames = np.frombuffer(row["frames"], np.uint8).reshape(int(row["n_frames"]), HEIGHT, WIDTH, 3)
            return _row(video, int(row["n_frames"]), shots=self.detector.detect(frames), frame_times=row.get("frame_times", b""))
        except Exception as e:  # noqa: BLE001 - isolate the video; the rest of the batch keeps its shots
            if is_systemic(e):
                raise
            return _row(video, error=ErrorRow.from_exception(uri=video["uri"], stage="infer", exc=e, video_id=video["video_id"]))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = [self.detect_row({k: v[i] for k, v in batch.items()}) for i in range(len(batch["video_json"]))]
        out = {k: np.array([r[k] for r in rows], dtype=object) for k in ("video_json", "frames", "frame_times", "shots_json", "error_json")}
        return {**out, "n_frames": np.array([r["n_frames"] for r in rows], dtype=np.int64)}
