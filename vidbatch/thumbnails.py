"""A small JPEG of one sampled frame per clip, stored in clips/ so reports never decode video again."""
from __future__ import annotations

import av
import numpy as np
import torch
from av.video.reformatter import VideoReformatter
from torchvision.io import encode_jpeg

JPEG_QUALITY = 80


def thumbnail_size(width: int, height: int, rotation: int, thumb_width: int) -> tuple[int, int]:
    """Scaled (width, height) of the upright frame, aspect kept, never upscaled."""
    if rotation % 180:
        width, height = height, width
    w = min(thumb_width, width)
    return w, max(1, round(height * w / width))


def encode_thumbnail(frame: av.VideoFrame, thumb_width: int, reformatter: VideoReformatter | None = None) -> bytes:
    """The whole frame (no crop), scaled in libswscale, turned upright, encoded as JPEG."""
    rotation = int(frame.rotation or 0) % 360
    w, h = thumbnail_size(frame.width, frame.height, rotation, thumb_width)
    if rotation % 180:
        w, h = h, w
    rgb = (reformatter or VideoReformatter()).reformat(
        frame, width=w, height=h, format="rgb24", interpolation="AREA"
    ).to_ndarray()
    if rotation:
        rgb = np.rot90(rgb, k=rotation // 90)  # display matrix rotation is counter-clockwise
    chw = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)
    return encode_jpeg(chw.contiguous(), quality=JPEG_QUALITY).numpy().tobytes()


def thumbnail_slot(sample_count: int) -> int:
    """Which of a clip's sampled frames becomes its thumbnail: the middle one."""
    return sample_count // 2
