"""`embed`: classify's embedding without labels, for users who only search or cluster clips.

It writes classify's `model` and `embedding` columns with the same meaning, so search built on `embedding` works
for either; a job with both tasks would write them twice and is refused when the config is validated.
"""
from __future__ import annotations

import pyarrow as pa
import torch

from vidbatch.config import TaskConfig
from vidbatch.core.schema import FRAME_EMBEDDINGS_FIELD, embed_fields
from vidbatch.infer.frame_views import FrameGeometry
from vidbatch.infer.tasks.classify import ImageClassifierTask
from vidbatch.infer.tasks.registry import register_task


@register_task("embed")
class ImageEmbeddingTask(ImageClassifierTask):
    @classmethod
    def output_fields(cls, cfg: TaskConfig) -> list[pa.Field]:
        return embed_fields(cls.feature_dim(cfg))

    def predict(
        self, frames: torch.Tensor, clip_lengths: list[int], batch_size: int, geometry: FrameGeometry | None = None
    ) -> dict[str, list]:
        """classify's forward pass (the same features); only the embedding columns are kept (and the frames')."""
        out = super().predict(frames, clip_lengths, batch_size, geometry)
        return {k: out[k] for k in ("model", "embedding", FRAME_EMBEDDINGS_FIELD.name)}
