"""`segment`: a torchvision semantic segmentation model gives each clip's class areas (and optionally masks).

Input follows the weights' preset (short side resized to 520 for torchvision's VOC weights, ImageNet
normalisation) cut from the job's canvases; the model's `out` logits are at input size, argmax gives the class.
"""
from __future__ import annotations

import io
from typing import ClassVar

import numpy as np
import pyarrow as pa
import torch
import torchvision
from PIL import Image

from vidbatch.config import TaskConfig
from vidbatch.core.devices import to_host
from vidbatch.core.schema import SEGMENT_FIELDS
from vidbatch.infer.frame_views import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    FrameGeometry,
    clip_regions,
    normalise,
    resize,
)
from vidbatch.infer.models import (
    categories,
    check_family,
    load_task_model,
    model_label,
    preset,
    resolve_task_weights,
)
from vidbatch.infer.tasks.registry import register_task
from vidbatch.plan.frame_plan import FrameSpec, StackSampling

DEFAULT_SIZE = 520  # torchvision's segmentation presets


def _preprocessing(cfg: TaskConfig) -> tuple[int, tuple[float, ...], tuple[float, ...]]:
    check_family(cfg, torchvision.models.segmentation, "segment")
    p = preset(cfg, resolve_task_weights(cfg))
    if p is None:
        return DEFAULT_SIZE, IMAGENET_MEAN, IMAGENET_STD
    return int(p.resize_size[0]), tuple(p.mean), tuple(p.std)


@register_task("segment")
class SemanticSegmentationTask:
    name: ClassVar[str]
    precisions: ClassVar[frozenset[str]] = frozenset({"bf16", "fp16"})

    @classmethod
    def frame_spec(cls, cfg: TaskConfig) -> FrameSpec:
        size = _preprocessing(cfg)[0]
        return FrameSpec(resize_short=size, crop=size, letterbox=True)

    @classmethod
    def own_samples(cls, cfg: TaskConfig) -> StackSampling | None:
        return None

    @classmethod
    def output_fields(cls, cfg: TaskConfig) -> list[pa.Field]:
        _preprocessing(cfg)
        return SEGMENT_FIELDS

    def __init__(self, cfg: TaskConfig, device: torch.device, storage_options: dict | None = None) -> None:
        self.size, self.mean, self.std = _preprocessing(cfg)
        self.resolved = resolve_task_weights(cfg)
        self.net = load_task_model(cfg, self.resolved, storage_options, weights_backbone=None).to(device)
        self.model_name = model_label(cfg, self.resolved)
        self.masks = cfg.masks

    def _labels(self, region: torch.Tensor, batch_size: int) -> tuple[torch.Tensor, int]:
        """(n, h, w) class index per pixel of the resized frames, and the number of classes."""
        x = normalise(resize(region, [self.size]), self.mean, self.std)
        out = []
        for chunk in x.split(batch_size):
            logits = self.net(chunk)
            logits = logits["out"] if isinstance(logits, dict) else logits
            out.append(logits.argmax(dim=1))
        return torch.cat(out), logits.shape[1]

    def largest_forward(self, batch_size: int, clip_lengths: list[int]) -> int:
        return min(batch_size, max(clip_lengths))  # one clip's frames at a time: clips differ in size

    @torch.inference_mode()
    def predict(
        self, frames: torch.Tensor, clip_lengths: list[int], batch_size: int, geometry: FrameGeometry | None = None
    ) -> dict[str, list]:
        geometry = geometry or FrameGeometry.whole_frames(frames, len(clip_lengths))
        fractions, masks, n_classes = [], [], 0
        for region in clip_regions(frames, clip_lengths, geometry):
            labels, n_classes = self._labels(region, batch_size)
            n = labels.shape[0]
            # one bincount over all frames: frame i's classes counted at i * n_classes + class
            offsets = torch.arange(n, device=labels.device).view(n, 1) * n_classes
            counts = torch.bincount((labels.flatten(1) + offsets).flatten(), minlength=n * n_classes)
            fractions.append((counts.view(n, n_classes).float() / labels[0].numel()).mean(dim=0))
            if self.masks:
                masks.append(self._mask_indices(labels, n_classes))
        host = to_host(fractions + masks)
        names = categories(self.resolved, n_classes)
        out: dict[str, list] = {"seg_model": [self.model_name] * len(clip_lengths), "seg_class_fractions": [], "seg_masks": []}
        for ci, f in enumerate(host[: len(fractions)]):
            order = np.argsort(-f, kind="stable")
            out["seg_class_fractions"].append([{"label": names[c], "fraction": float(f[c])} for c in order if f[c] > 0])
            out["seg_masks"].append(self._masks(host[len(fractions) + ci]) if self.masks else None)
        return out

    @staticmethod
    def _mask_indices(labels: torch.Tensor, n_classes: int) -> torch.Tensor:
        if n_classes > 256:
            raise ValueError("segment masks store class indices as 8-bit PNG; this model has more than 256 classes")
        return labels.to(torch.uint8)

    @staticmethod
    def _masks(labels: np.ndarray) -> list[dict]:
        """8-bit grayscale PNGs (pixel = class index): lossless and compact for a few large regions."""
        h, w = labels.shape[-2:]
        masks = []
        for f in labels:
            buffer = io.BytesIO()
            Image.fromarray(f).save(buffer, format="PNG")
            masks.append({"width": w, "height": h, "png": buffer.getvalue()})
        return masks
