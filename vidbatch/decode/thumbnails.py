"""A small JPEG of one sampled frame per clip, stored in clips/ so reports never decode video again.

The frame is scaled in libswscale (PyAV) and encoded by Pillow, which PyAV hands frames to directly.
"""
from __future__ import annotations

import io

import av
from av.video.reformatter import VideoReformatter
from PIL import Image

JPEG_QUALITY = 80
# display-matrix rotation (counter-clockwise degrees) -> the Pillow transpose that turns the frame upright
_UPRIGHT = {90: Image.Transpose.ROTATE_90, 180: Image.Transpose.ROTATE_180, 270: Image.Transpose.ROTATE_270}


def thumbnail_size(width: int, height: int, rotation: int, thumb_width: int) -> tuple[int, int]:
    """Scaled (width, height) of the upright frame, aspect kept, never upscaled."""
    if rotation % 180:
        width, height = height, width
    w = min(thumb_width, width)
    return w, max(1, round(height * w / width))


def encode_thumbnail(frame: av.VideoFrame, thumb_width: int, reformatter: VideoReformatter | None = None) -> bytes:
    """The whole frame (no crop), scaled, turned upright, encoded as JPEG."""
    rotation = int(frame.rotation or 0) % 360
    w, h = thumbnail_size(frame.width, frame.height, rotation, thumb_width)
    if rotation % 180:
        w, h = h, w
    small = (reformatter or VideoReformatter()).reformat(frame, width=w, height=h, format="rgb24", interpolation="AREA")
    image = small.to_image()
    if rotation in _UPRIGHT:
        image = image.transpose(_UPRIGHT[rotation])
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def thumbnail_slot(sample_count: int) -> int:
    """Which of a clip's sampled frames becomes its thumbnail: the middle one."""
    return sample_count // 2
