"""`classify`: a torchvision image classifier gives top-k labels and an embedding from one forward pass."""
from __future__ import annotations

from typing import ClassVar

import numpy as np
import pyarrow as pa
import torch
import torchvision

from vidbatch.config import TaskConfig
from vidbatch.core.devices import to_host
from vidbatch.core.schema import FRAME_EMBEDDINGS_FIELD, classify_fields
from vidbatch.infer.frame_views import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    FrameGeometry,
    centre_crops,
)
from vidbatch.infer.models import (
    ResolvedWeights,
    build_torchvision_model,
    resolve_weights,
)
from vidbatch.infer.tasks.registry import register_task
from vidbatch.plan.frame_plan import DEFAULT_FRAME_SPEC, FrameSpec, StackSampling


def _last_linear(net: torch.nn.Module) -> torch.nn.Linear:
    """The classifier head; its input is the penultimate feature vector, for every torchvision classifier."""
    linears = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
    if not linears:
        raise ValueError(f"{type(net).__name__} has no Linear head to take an embedding from")
    return linears[-1]


def _preprocessing(resolved: ResolvedWeights) -> tuple[FrameSpec, tuple[float, ...], tuple[float, ...]]:
    """Frame size and normalisation the weights were trained with (their torchvision transforms preset)."""
    if resolved.enum is None:
        return DEFAULT_FRAME_SPEC, IMAGENET_MEAN, IMAGENET_STD
    preset = resolved.enum.transforms()
    spec = FrameSpec(resize_short=int(preset.resize_size[0]), crop=int(preset.crop_size[0]))
    return spec, tuple(preset.mean), tuple(preset.std)


@register_task("classify")
class ImageClassifierTask:
    name: ClassVar[str]
    precisions: ClassVar[frozenset[str]] = frozenset({"bf16", "fp16"})

    @classmethod
    def frame_spec(cls, cfg: TaskConfig) -> FrameSpec:
        return _preprocessing(resolve_weights(cfg.model, cfg.weights))[0]

    @classmethod
    def own_samples(cls, cfg: TaskConfig) -> StackSampling | None:
        return None

    @classmethod
    def feature_dim(cls, cfg: TaskConfig) -> int:
        resolved = resolve_weights(cfg.model, cfg.weights)
        kwargs = {"num_classes": len(resolved.categories)} if resolved.categories else {}
        with torch.device("meta"):
            net = torchvision.models.get_model_builder(cfg.model)(weights=None, **kwargs)
        return _last_linear(net).in_features

    @classmethod
    def output_fields(cls, cfg: TaskConfig) -> list[pa.Field]:
        return classify_fields(cls.feature_dim(cfg))

    def __init__(self, cfg: TaskConfig, device: torch.device, storage_options: dict | None = None) -> None:
        self.device = device
        self.top_k = cfg.top_k
        resolved = resolve_weights(cfg.model, cfg.weights)
        self.net = build_torchvision_model(cfg.model, resolved, cfg.weights_path, storage_options).to(device)
        head = _last_linear(self.net)
        self.categories = resolved.categories or [f"class_{i}" for i in range(head.out_features)]
        self.model_name = f"{cfg.model}:{resolved.label}"
        self.spec, mean, std = _preprocessing(resolved)
        self.mean = torch.tensor(mean, device=device).view(1, 3, 1, 1) * 255
        self.std = torch.tensor(std, device=device).view(1, 3, 1, 1) * 255
        self._features: torch.Tensor | None = None
        head.register_forward_hook(self._keep_features)

    def _keep_features(self, _module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], _output: torch.Tensor) -> None:
        self._features = inputs[0]

    @torch.inference_mode()
    def forward_frames(self, frames: torch.Tensor, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-frame softmax probabilities and penultimate features, both float32."""
        probs, feats = [], []
        for chunk in frames.split(batch_size):
            x = (chunk.permute(0, 3, 1, 2).float() - self.mean) / self.std
            logits = self.net(x)
            probs.append(logits.float().softmax(dim=1))
            feats.append(self._features.float().flatten(1))
        return torch.cat(probs), torch.cat(feats)

    def largest_forward(self, batch_size: int, clip_lengths: list[int]) -> int:
        return min(batch_size, sum(clip_lengths))

    @torch.inference_mode()
    def predict(
        self, frames: torch.Tensor, clip_lengths: list[int], batch_size: int, geometry: FrameGeometry | None = None
    ) -> dict[str, list]:
        if geometry is not None:
            frames = centre_crops(frames, clip_lengths, geometry, self.spec)
        probs, feats = self.forward_frames(frames, batch_size)
        clip_probs = torch.stack([p.mean(dim=0) for p in probs.split(clip_lengths)])
        embeddings = torch.nn.functional.normalize(torch.stack([f.mean(dim=0) for f in feats.split(clip_lengths)]), dim=1)
        scores, idx = clip_probs.topk(min(self.top_k, probs.shape[1]))
        scores, idx, embeddings, frame_embeddings = to_host(
            [scores, idx, embeddings, torch.nn.functional.normalize(feats, dim=1)]
        )
        return {
            "model": [self.model_name] * len(clip_lengths),
            "labels": [[self.categories[i] for i in row] for row in idx.tolist()],
            "scores": scores.tolist(),
            "embedding": list(embeddings),
            # each frame's features, normalised: the job keeps them with out.frame_embeddings (frames/)
            FRAME_EMBEDDINGS_FIELD.name: [list(f) for f in np.split(frame_embeddings, np.cumsum(clip_lengths)[:-1])],
        }
