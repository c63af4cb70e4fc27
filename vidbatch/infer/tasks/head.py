"""`head`: a classifier from `vidbatch train-head` applied in the job, on the embeddings the classify task makes:
the clip's embedding (linear heads) or its frames' embeddings in time order (temporal heads)."""
from __future__ import annotations

from typing import ClassVar

import numpy as np
import pyarrow as pa
import torch

from vidbatch.config import TaskConfig
from vidbatch.core.schema import head_fields
from vidbatch.infer.frame_views import FrameGeometry
from vidbatch.infer.head_files import ClipHead, read_head
from vidbatch.infer.head_registry import check_embedding_model
from vidbatch.infer.models import resolve_weights
from vidbatch.infer.tasks.classify import ImageClassifierTask
from vidbatch.infer.tasks.registry import register_task
from vidbatch.plan.frame_plan import FrameSpec, StackSampling


def _checked_head(cfg: TaskConfig, storage_options: dict | None = None) -> ClipHead:
    """The head file, refused when it was trained on another embedding model than this task's model/weights."""
    if cfg.head_path is None:
        raise ValueError("head_path: required for the head task (a file from `vidbatch train-head`)")
    head, _ = read_head(cfg.head_path, storage_options)
    check_embedding_model(head, f"{cfg.model}:{resolve_weights(cfg.model, cfg.weights).label}")
    return head


@register_task("head")
class ClipHeadTask:
    name: ClassVar[str]
    precisions: ClassVar[frozenset[str]] = ImageClassifierTask.precisions

    @classmethod
    def frame_spec(cls, cfg: TaskConfig) -> FrameSpec:
        return ImageClassifierTask.frame_spec(cfg)

    @classmethod
    def output_fields(cls, cfg: TaskConfig) -> list[pa.Field]:
        _checked_head(cfg)
        return head_fields()

    @classmethod
    def own_samples(cls, cfg: TaskConfig) -> StackSampling | None:
        return ImageClassifierTask.own_samples(cfg)

    def __init__(self, cfg: TaskConfig, device: torch.device, storage_options: dict | None = None) -> None:
        self.head = _checked_head(cfg, storage_options)
        self.backbone = ImageClassifierTask(cfg, device, storage_options)

    def largest_forward(self, batch_size: int, clip_lengths: list[int]) -> int:
        return self.backbone.largest_forward(batch_size, clip_lengths)

    def predict(
        self, frames: torch.Tensor, clip_lengths: list[int], batch_size: int, geometry: FrameGeometry | None = None
    ) -> dict[str, list]:
        inputs = self.backbone.predict(frames, clip_lengths, batch_size, geometry)[self.head.reads]
        probs = self.head.probabilities(inputs)
        best = probs.argmax(axis=1)
        return {
            "head_label": [self.head.class_names[i] for i in best],
            "head_score": probs[np.arange(len(best)), best].tolist(),
        }
