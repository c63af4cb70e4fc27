"""Each task's input cut from the job's shared canvases on the task's device (see vidbatch/plan/frame_plan.py).

Canvases are (N, S, S, 3) uint8, clips back to back. On a letterboxed job a clip's image fills the top-left
`valid_wh` of its canvases; elsewhere it fills the whole canvas.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from vidbatch.plan.frame_plan import FrameSpec

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # torchvision's ImageNet normalisation, the default preprocessing
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class FrameGeometry:
    """The job's canvas spec and, per clip, the upright source frame size its canvases were scaled from."""

    spec: FrameSpec
    source_wh: tuple[tuple[int, int], ...]

    @classmethod
    def whole_frames(cls, frames: torch.Tensor, n_clips: int) -> FrameGeometry:
        """For frames handed to a task directly (not the job's canvases): each frame is all image."""
        side = max(frames.shape[1], frames.shape[2])
        return cls(FrameSpec(side, side), ((0, 0),) * n_clips)

    def valid_wh(self, clip: int) -> tuple[int, int]:
        if self.spec.letterbox and self.source_wh[clip][0] > 0:
            return self.spec.scaled_size(*self.source_wh[clip])
        return self.spec.crop, self.spec.crop


def clip_regions(frames: torch.Tensor, lengths: Sequence[int], geometry: FrameGeometry) -> Iterator[torch.Tensor]:
    """Per clip, its frames' image regions as (n, 3, h, w) float32 in 0..255."""
    for i, clip in enumerate(frames.split(list(lengths))):
        w, h = geometry.valid_wh(i)
        yield clip[:, :h, :w].permute(0, 3, 1, 2).float()


def resize(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """torchvision's Resize on (n, 3, h, w): one number scales the short side to it, two give (h, w)."""
    h, w = x.shape[-2:]
    if len(size) == 1:
        scale = size[0] / min(h, w)
        out = (max(1, round(h * scale)), max(1, round(w * scale)))
    else:
        out = (int(size[0]), int(size[1]))
    if out == (h, w):
        return x
    return F.interpolate(x, size=out, mode="bilinear", align_corners=False, antialias=True)


def centre_crop(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    ch, cw = (size[0], size[0]) if len(size) == 1 else size
    top, left = max(0, (x.shape[-2] - ch) // 2), max(0, (x.shape[-1] - cw) // 2)
    return x[..., top : top + ch, left : left + cw]


def centre_crops(frames: torch.Tensor, lengths: Sequence[int], geometry: FrameGeometry, spec: FrameSpec) -> torch.Tensor:
    """(N, crop, crop, 3) uint8 as if decoded with `spec` (short side to resize_short, centre crop): the canvases
    themselves when the job decoded with that spec, else cut from each clip's image region."""
    if geometry.spec == spec:
        return frames
    out = []
    for region in clip_regions(frames, lengths, geometry):
        short = min(region.shape[-2:])
        side = max(1, min(short, round(short * spec.crop / spec.resize_short)))
        square = centre_crop(region, (side, side))
        out.append(resize(square, (spec.crop, spec.crop)).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1))
    return torch.cat(out) if out else frames[:, : spec.crop, : spec.crop]


def normalise(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """0..255 channels-first (channel axis 1) to the weights' normalisation."""
    shape = (1, 3) + (1,) * (x.dim() - 2)
    m = torch.tensor(mean, device=x.device).view(shape) * 255
    s = torch.tensor(std, device=x.device).view(shape) * 255
    return (x - m) / s
