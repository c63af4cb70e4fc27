"""Query images and video frames embedded exactly as the job embedded clips, for `vidbatch search`. A module of
its own so that a search by stored clip (--like) never imports torch (about 650 MB of the process' memory).
"""
from __future__ import annotations

from typing import Any

import av
import numpy as np
import torch

from vidbatch.config import TaskConfig
from vidbatch.core.ids import video_id_for
from vidbatch.decode.decoder import decode_unit, frame_to_array
from vidbatch.infer.models import resolve_weights
from vidbatch.infer.tasks.classify import ImageClassifierTask
from vidbatch.plan.clips import ClipPlan, WorkUnit
from vidbatch.plan.probe import probe_video
from vidbatch.store.committed import run_manifests


def task_config_for(model: str, out: str, storage_options: dict[str, Any] | None = None) -> TaskConfig:
    """The classify task config of the newest run that produced `model` embeddings (its weights_path included)."""
    for manifest in reversed(run_manifests(out, storage_options)):
        for task in manifest.get("config", {}).get("tasks", []):
            if task.get("task") != "classify":
                continue
            cfg = TaskConfig.model_validate(task)
            if f"{cfg.model}:{resolve_weights(cfg.model, cfg.weights).label}" == model:
                return cfg
    raise ValueError(f"{out}/runs: no run manifest has a classify task for {model}; cannot embed a query image")


class QueryEmbedder:
    """Embeds query images exactly like the job embedded clips: same model, preprocessing, pooling."""

    def __init__(self, cfg: TaskConfig, storage_options: dict[str, Any] | None = None):
        self.task = ImageClassifierTask(cfg, torch.device("cpu"), storage_options)
        self.spec = ImageClassifierTask.frame_spec(cfg)

    def embed_frames(self, frames: np.ndarray) -> np.ndarray:
        """(n, crop, crop, 3) uint8 frames -> one L2-normalised embedding (mean-pooled, as a clip's)."""
        out = self.task.predict(torch.from_numpy(frames), [len(frames)], batch_size=16)
        return np.asarray(out["embedding"][0], np.float32)

    def embed_image(self, path: str) -> np.ndarray:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as image:
                frame = av.VideoFrame.from_image(image.convert("RGB"))
        except (UnidentifiedImageError, OSError) as e:
            raise ValueError(f"{path}: cannot read image ({e})") from None
        return self.embed_frames(frame_to_array(frame, self.spec)[None])

    def embed_video_frame(self, uri: str, at_s: float, storage_options: dict[str, Any] | None = None) -> np.ndarray:
        """The frame on screen at `at_s` seconds, decoded by the job's own decoder."""
        info = probe_video(uri, storage_options)
        if not 0 <= at_s <= info.duration_s:
            raise ValueError(f"--at {at_s}: outside {uri} (0 to {info.duration_s:.3f} s)")
        plan = ClipPlan(0, "query", at_s, at_s, (at_s,))
        unit = WorkUnit(uri, video_id_for(uri), 0, info.start_s, info.keyframe_interval_s, (plan,))
        (decoded,) = list(decode_unit(unit, self.spec, storage_options=storage_options))
        if decoded.error:
            raise ValueError(f"--at {at_s}: {decoded.error}")
        return self.embed_frames(decoded.frames)
