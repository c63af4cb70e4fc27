"""The shot stages as plain callables: Ray runs the decode stage in tasks and the model stage in an actor pool;
tests call them directly.

A video streams through them in rows of bounded size (issue 13): the decode stage yields one row per chunk of
TransNetV2 windows (raw bytes, about 1,000 frames: 4 MB), the model stage turns each into the
predictions of its frames, and `video_results` stitches a video's rows back in order on the driver, where only the
predictions and frame times (12 bytes a frame) of a video meet. A detector without a model consumes the chunks in
the decode task and yields one row with the shots.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from vidbatch.config import ShotsConfig
from vidbatch.core.devices import pick_device
from vidbatch.core.errors import ErrorRow
from vidbatch.core.faults import is_systemic
from vidbatch.shots import ShotDetector, get_detector
from vidbatch.shots.lowres import HEIGHT, WIDTH, iter_lowres
from vidbatch.shots.transnetv2_windows import (
    chunk_windows,
    shots_from_predictions,
    window_chunks,
)

ROW_COLUMNS = ("video_json", "chunk_index", "last", "n_frames", "frames", "frame_times", "predictions", "shots_json", "error_json")


def build_detector(cfg: ShotsConfig) -> ShotDetector:
    cls = get_detector(cfg.detector)
    model_args = (
        {"batch_size": cfg.batch_size, "device": cfg.device, "precision": cfg.precision, "window": cfg.window_frames}
        if cls.needs_model else {}
    )
    return cls(threshold=cfg.threshold, min_shot_frames=cfg.min_shot_frames, **model_args)


def _row(video: dict[str, Any], chunk_index: int = 0, last: bool = True, n_frames: int = 0, frames: bytes = b"",
         frame_times: bytes = b"", predictions: bytes = b"", shots: list | None = None,
         error: ErrorRow | None = None) -> dict[str, Any]:
    """frame_times: the times in seconds from the first frame of the frames first seen in this row, float64
    bytes (shot times follow them); n_frames: the video's frame count, on its last row."""
    return {
        "video_json": json.dumps(video), "chunk_index": chunk_index, "last": last, "n_frames": n_frames,
        "frames": frames, "frame_times": frame_times, "predictions": predictions,
        "shots_json": json.dumps([s.to_dict() for s in shots]) if shots is not None else "",
        "error_json": json.dumps(error.to_dict()) if error else "",
    }


@dataclass(frozen=True)
class ShotDecodeStage:
    """`video_json` ({uri, video_id}) in; rows of the video's 48x27 frames out, one per chunk of windows, or one
    row with its shots when the detector needs no model (so frames never leave the task that decoded them). An
    unreadable video ends its rows with a `decode` error."""

    shots: ShotsConfig
    threads: int = 1
    storage_options: dict[str, Any] | None = None

    def __call__(self, row: dict[str, Any]) -> Iterator[dict[str, Any]]:
        video = json.loads(row["video_json"])
        times: list[np.ndarray] = []
        n_frames = 0
        index = 0

        def frames() -> Iterator[np.ndarray]:
            nonlocal n_frames
            for chunk, chunk_times in iter_lowres(video["uri"], self.threads, self.storage_options):
                n_frames += len(chunk)
                times.append(chunk_times)
                yield chunk

        def new_times() -> bytes:
            out = np.concatenate(times).tobytes() if times else b""
            times.clear()
            return out

        try:
            if not get_detector(self.shots.detector).needs_model:
                shots = build_detector(self.shots).detect(frames())
                # the times of every frame: 8 bytes a frame, the one part of the row that grows with the video
                yield _row(video, n_frames=n_frames, frame_times=new_times(), shots=shots)
                return
            pending = None  # one chunk's bytes held back, so the last row is known to be last
            window = self.shots.window_frames
            for chunk in window_chunks(frames(), chunk_windows(window), window):
                if pending is not None:
                    yield _row(video, index, False, frames=pending, frame_times=new_times())
                    index += 1
                pending = chunk.tobytes()
            yield _row(video, index, True, n_frames, pending, new_times())
        except Exception as e:  # noqa: BLE001 - a broken video is data
            if is_systemic(e):
                raise
            error = ErrorRow.from_exception(uri=video["uri"], stage="decode", exc=e, video_id=video["video_id"])
            yield _row(video, index, error=error)


class ShotModelActor:
    """Chunk rows with frames in, rows with their frames' predictions out; one model load per actor. A chunk the
    model fails on becomes an `infer` error; a bug, a CUDA error or out of memory goes on up (systemic)."""

    def __init__(self, shots: ShotsConfig):
        import torch  # here, not at the top: the decode stage above runs in decode tasks, which need no torch

        if pick_device(shots.device).type == "cpu":
            torch.set_num_threads(max(1, int(shots.num_cpus)))
        self.detector = build_detector(shots)

    def predict_row(self, row: dict[str, Any]) -> dict[str, Any]:
        if row["error_json"] or row["shots_json"] or not row["frames"]:
            return {**row, "frames": b""}
        video = json.loads(row["video_json"])
        try:
            chunk = np.frombuffer(row["frames"], np.uint8).reshape(-1, HEIGHT, WIDTH, 3)
            predictions = self.detector.chunk_predictions(chunk)
            return {**row, "frames": b"", "predictions": predictions.astype(np.float32).tobytes()}
        except Exception as e:  # noqa: BLE001 - isolate the video; the rest of the batch keeps its predictions
            if is_systemic(e):
                raise
            error = ErrorRow.from_exception(uri=video["uri"], stage="infer", exc=e, video_id=video["video_id"])
            return _row(video, int(row["chunk_index"]), bool(row["last"]), error=error)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = [self.predict_row({k: v[i] for k, v in batch.items()}) for i in range(len(batch["video_json"]))]
        return {k: np.array([r[k] for r in rows], dtype=object) for k in ROW_COLUMNS}


def video_results(rows: Iterable[dict[str, Any]], shots: ShotsConfig) -> list[dict[str, Any]]:
    """A video's rows (any order) -> one result per video: its shots and frame times, or its first error. A
    model detector's shots come from the predictions of its chunks, stitched in order and cut to its frames."""
    by_video: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_video.setdefault(json.loads(row["video_json"])["video_id"], []).append(row)
    cls = get_detector(shots.detector)
    threshold = cls.default_threshold if shots.threshold is None else shots.threshold
    min_frames = cls.default_min_shot_frames if shots.min_shot_frames is None else shots.min_shot_frames
    results = []
    for parts in by_video.values():
        parts.sort(key=lambda r: int(r["chunk_index"]))
        times = b"".join(r["frame_times"] or b"" for r in parts)
        result = {"video_json": parts[0]["video_json"], "frame_times": times, "shots_json": "", "error_json": ""}
        errors = [r["error_json"] for r in parts if r["error_json"]]
        if errors:
            result["error_json"] = errors[0]
        elif parts[-1]["shots_json"]:
            result["shots_json"] = parts[-1]["shots_json"]
        else:
            n = int(parts[-1]["n_frames"])
            predictions = np.frombuffer(b"".join(r["predictions"] for r in parts), np.float32)[:n]
            result["shots_json"] = json.dumps([s.to_dict() for s in shots_from_predictions(predictions, threshold, min_frames)])
        results.append(result)
    return results
