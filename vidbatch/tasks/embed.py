"""`embed`: classify's embedding without labels, for users who only search or cluster clips.

It writes classify's `model` and `embedding` columns with the same meaning, so search built on `embedding` works
for either; a job with both tasks would write them twice and is refused when the config is validated.
"""
from __future__ import annotations

import pyarrow as pa
import torch

from vidbatch.config import TaskConfig
from vidbatch.frame_views import FrameGeometry, centre_crops
from vidbatch.schema import embed_fields
from vidbatch.tasks import register_task
from vidbatch.tasks.classify import ImageClassifierTask


@register_task("embed")
class ImageEmbeddingTask(ImageClassifierTask):
    @classmethod
    def output_fields(cls, cfg: TaskConfig) -> list[pa.Field]:
        return embed_fields(cls.feature_dim(cfg))

    @torch.inference_mode()
    def predict(
        self, frames: torch.Tensor, clip_lengths: list[int], batch_size: int, geometry: FrameGeometry | None = None
    ) -> dict[str, list]:
        if geometry is not None:
            frames = centre_crops(frames, clip_lengths, geometry, self.spec)
        _, feats = self.forward_frames(frames, batch_size)
        embeddings = [torch.nn.functional.normalize(f.mean(dim=0), dim=0).cpu().numpy() for f in feats.split(clip_lengths)]
        return {"model": [self.model_name] * len(clip_lengths), "embedding": embeddings}
