"""`action`: a torchvision video classifier gives each clip's top-k Kinetics-400 actions.

The model sees what it was evaluated on: a contiguous stack of `clip_len` frames at `frame_rate` (from the weights'
documentation, e.g. 16 frames at 15 fps for r3d_18, 128 at 15 for s3d, 16 at 7.5 for mvit_v1_b), centred in the
clip and sampled by the task itself in the same decode as the job's frames; then the preset's resize, centre crop
and normalisation, applied on the device to the full frame.
"""
from __future__ import annotations

from typing import Any, ClassVar

import pyarrow as pa
import torch
import torchvision

from vidbatch.config import TaskConfig
from vidbatch.core.devices import to_host
from vidbatch.core.schema import ACTION_FIELDS
from vidbatch.infer.frame_views import (
    FrameGeometry,
    centre_crop,
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
from vidbatch.plan.frame_plan import FrameSpec, StackSampling, stack_from_docs


def _preset(cfg: TaskConfig) -> tuple[Any, StackSampling]:
    check_family(cfg, torchvision.models.video, "action")
    resolved = resolve_task_weights(cfg)
    p = preset(cfg, resolved)
    enum = resolved.enum or (None if p is None else torchvision.models.get_model_weights(cfg.model).DEFAULT)
    stack = None if enum is None else stack_from_docs(enum.meta.get("_docs", ""))
    if p is None or stack is None:
        raise ValueError(
            f"action: no frame rate/clip length known for {cfg.model} with weights {cfg.weights!r}; "
            "name torchvision video weights (e.g. 'R3D_18_Weights.KINETICS400_V1')"
        )
    return p, stack


@register_task("action")
class VideoClassifierTask:
    name: ClassVar[str]
    precisions: ClassVar[frozenset[str]] = frozenset({"bf16", "fp16"})

    @classmethod
    def frame_spec(cls, cfg: TaskConfig) -> FrameSpec:
        side = max(int(s) for s in _preset(cfg)[0].resize_size)
        return FrameSpec(resize_short=side, crop=side, letterbox=True)

    @classmethod
    def own_samples(cls, cfg: TaskConfig) -> StackSampling | None:
        return _preset(cfg)[1]

    @classmethod
    def output_fields(cls, cfg: TaskConfig) -> list[pa.Field]:
        _preset(cfg)
        return ACTION_FIELDS

    def __init__(self, cfg: TaskConfig, device: torch.device, storage_options: dict | None = None) -> None:
        self.preset, self.stack = _preset(cfg)
        self.resolved = resolve_task_weights(cfg)
        self.net = load_task_model(cfg, self.resolved, storage_options).to(device)
        self.model_name = model_label(cfg, self.resolved)
        self.top_k = cfg.top_k

    def _input(self, region: torch.Tensor) -> torch.Tensor:
        """(T, 3, h, w) 0..255 -> (3, T, crop, crop) normalised, as torchvision's VideoClassification preset."""
        x = centre_crop(resize(region, self.preset.resize_size), self.preset.crop_size)
        return normalise(x, self.preset.mean, self.preset.std).transpose(0, 1)

    def largest_forward(self, batch_size: int, clip_lengths: list[int]) -> int:
        """batch_size counts frames; a forward takes whole stacks, at least one."""
        return min(len(clip_lengths), max(1, batch_size // self.stack.frames)) * self.stack.frames

    @torch.inference_mode()
    def predict(
        self, frames: torch.Tensor, clip_lengths: list[int], batch_size: int, geometry: FrameGeometry | None = None
    ) -> dict[str, list]:
        """frames: each clip's stack of self.stack.frames frames."""
        geometry = geometry or FrameGeometry.whole_frames(frames, len(clip_lengths))
        clips = torch.stack([self._input(r) for r in clip_regions(frames, clip_lengths, geometry)])
        per_forward = max(1, batch_size // self.stack.frames)  # batch_size counts frames
        probs = torch.cat([self.net(c).float().softmax(dim=1) for c in clips.split(per_forward)])
        names = categories(self.resolved, probs.shape[1])
        k = min(self.top_k, probs.shape[1])
        scores, idx = to_host(list(probs.topk(k)))
        return {
            "action_model": [self.model_name] * len(clip_lengths),
            "action_labels": [[names[i] for i in row] for row in idx.tolist()],
            "action_scores": scores.tolist(),
        }
