"""`detect`: a torchvision object detector gives boxes per sampled frame and per-clip counts by class.

Detectors resize and normalise internally (their GeneralizedRCNNTransform), so they get each frame's image region
of the canvas as 0..1 floats; boxes come back in that region's pixels and are scaled to the upright source frame.
The canvas asks for the detector's own min_size, so the detector does not scale the image up again.
"""
from __future__ import annotations

from collections import Counter
from typing import ClassVar

import numpy as np
import pyarrow as pa
import torch
import torchvision

from vidbatch.config import TaskConfig
from vidbatch.core.devices import to_host
from vidbatch.core.schema import DETECT_FIELDS
from vidbatch.infer.frame_views import FrameGeometry, clip_regions
from vidbatch.infer.models import (
    TORCHSCRIPT,
    check_family,
    load_task_model,
    model_label,
    resolve_task_weights,
)
from vidbatch.infer.tasks.registry import register_task
from vidbatch.plan.frame_plan import FrameSpec, StackSampling

DEFAULT_SIZE = 320  # canvas for a TorchScript detector: SSDlite's input size


def _input_size(cfg: TaskConfig) -> int:
    check_family(cfg, torchvision.models.detection, "detect")
    resolve_task_weights(cfg)
    if cfg.model == TORCHSCRIPT:
        return DEFAULT_SIZE
    with torch.device("meta"):
        net = torchvision.models.get_model(cfg.model, weights=None, weights_backbone=None)
    return int(net.transform.min_size[-1])


@register_task("detect")
class ObjectDetectionTask:
    name: ClassVar[str]
    # not bf16: torchvision decodes boxes in the regression head's dtype, and bf16 steps are about 4 px at 1000 px
    precisions: ClassVar[frozenset[str]] = frozenset({"fp16"})

    @classmethod
    def frame_spec(cls, cfg: TaskConfig) -> FrameSpec:
        size = _input_size(cfg)
        return FrameSpec(resize_short=size, crop=size, letterbox=True)

    @classmethod
    def own_samples(cls, cfg: TaskConfig) -> StackSampling | None:
        return None

    @classmethod
    def output_fields(cls, cfg: TaskConfig) -> list[pa.Field]:
        _input_size(cfg)
        return DETECT_FIELDS

    def __init__(self, cfg: TaskConfig, device: torch.device, storage_options: dict | None = None) -> None:
        self.resolved = resolve_task_weights(cfg)
        self.net = load_task_model(cfg, self.resolved, storage_options, weights_backbone=None).to(device)
        self.model_name = model_label(cfg, self.resolved)
        self.threshold = cfg.score_threshold

    def _label(self, index: int) -> str:
        """COCO's 91 ids (with N/A gaps) when the weights carry them, else class_<i>."""
        names = self.resolved.categories or []
        return names[index] if index < len(names) else f"class_{index}"

    def _detect(self, region: torch.Tensor, batch_size: int) -> list[dict[str, torch.Tensor]]:
        found: list[dict[str, torch.Tensor]] = []
        for chunk in (region / 255).split(batch_size):
            out = self.net(list(chunk))
            found.extend(out[1] if isinstance(out, tuple) else out)  # scripted torchvision detectors: (losses, dets)
        return found

    def largest_forward(self, batch_size: int, clip_lengths: list[int]) -> int:
        return min(batch_size, max(clip_lengths))  # one clip's frames at a time: clips differ in size

    @torch.inference_mode()
    def predict(
        self, frames: torch.Tensor, clip_lengths: list[int], batch_size: int, geometry: FrameGeometry | None = None
    ) -> dict[str, list]:
        geometry = geometry or FrameGeometry.whole_frames(frames, len(clip_lengths))
        per_clip: list[list[dict[str, torch.Tensor]]] = []
        scales: list[np.ndarray] = []
        for ci, region in enumerate(clip_regions(frames, clip_lengths, geometry)):
            w, h = region.shape[-1], region.shape[-2]
            sw, sh = geometry.source_wh[ci] if geometry.source_wh[ci][0] > 0 else (w, h)
            scales.append(np.array([sw / w, sh / h, sw / w, sh / h], dtype=np.float32))
            per_clip.append(self._detect(region, batch_size))
        # every frame's detections off the device together, kept or not: filtering on the device would sync per frame
        host = iter(to_host([t for dets in per_clip for d in dets for t in (d["boxes"].float(), d["scores"].float(), d["labels"])]))
        out: dict[str, list] = {"det_model": [self.model_name] * len(clip_lengths), "det_detections": [], "det_counts": []}
        for dets, scale in zip(per_clip, scales):
            rows: list[dict] = []
            most: Counter = Counter()
            for fi in range(len(dets)):
                boxes, scores, label_ids = next(host), next(host), next(host)
                keep = scores >= self.threshold
                labels = [self._label(i) for i in label_ids[keep].tolist()]
                for label, score, box in zip(labels, scores[keep].tolist(), (boxes[keep] * scale).tolist()):
                    rows.append({"frame_index": fi, "label": label, "score": score, **dict(zip(("x1", "y1", "x2", "y2"), box))})
                most |= Counter(labels)  # per class, the largest count in any one frame
            out["det_detections"].append(rows)
            out["det_counts"].append([{"label": k, "count": n} for k, n in most.most_common()])
        return out
