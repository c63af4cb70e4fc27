"""Tiny test videos made with PyAV's encoder. Frame i carries i in 8 horizontal black/white bands (bit 7 on top),
which survives H.264 and any scaling, so a test can read back exactly which frame was decoded."""
from __future__ import annotations

from pathlib import Path

import av
import numpy as np

BITS = 8


def index_frame(i: int, width: int, height: int, color: tuple[int, int, int] | None = None) -> np.ndarray:
    img = np.zeros((height, width, 3), dtype=np.uint8)
    band = height // BITS
    for b in range(BITS):
        if (i >> (BITS - 1 - b)) & 1:
            img[b * band : (b + 1) * band] = 255
    if color is not None:
        img[:, : width // 4] = color  # a coloured strip for tests that need content, outside the read-back columns
    return img


def read_index(rgb: np.ndarray) -> int:
    """Inverse of index_frame on a decoded (possibly rescaled) frame; reads the middle columns."""
    h, w = rgb.shape[:2]
    band = h / BITS
    middle = rgb[:, w // 3 : 2 * w // 3].mean(axis=(1, 2))
    value = 0
    for b in range(BITS):
        value = value * 2 + int(middle[int((b + 0.5) * band)] > 127)
    return value


def make_video(
    path: Path,
    seconds: float = 3.0,
    fps: int = 10,
    width: int = 160,
    height: int = 120,
    gop: int | None = None,
    rotation: int = 0,
    frames: list[np.ndarray] | None = None,
    bframes: int = 0,
) -> Path:
    """Write H.264 (container from the suffix: .mp4, .mkv, .ts ...) whose frame i shows i (or the given frames).
    bframes > 0 reorders frames (decode order != presentation order), as real camera and web encodes do."""
    n = len(frames) if frames is not None else round(seconds * fps)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "18", "x264-params": f"bframes={bframes}"}
        if gop:
            stream.codec_context.gop_size = gop
        if rotation:
            stream.set_display_rotation(rotation)
        for i in range(n):
            img = frames[i] if frames is not None else index_frame(i, width, height)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def panning_shot(seed: int, n: int, width: int = 160, height: int = 96) -> list[np.ndarray]:
    """n frames of one 'shot': a smooth random colour field panning one pixel per frame (content that moves a
    little between frames, as camera footage does, and differs completely from another seed's)."""
    from PIL import Image

    grid = np.random.default_rng(seed).integers(0, 256, (4, 6, 3)).astype(np.uint8)
    field = np.asarray(Image.fromarray(grid).resize((width + n, height), Image.BILINEAR))
    return [np.ascontiguousarray(field[:, i : i + width]) for i in range(n)]


def cross_fade(a: np.ndarray, b: np.ndarray, n: int) -> list[np.ndarray]:
    """n frames blending from a to b (exclusive of both ends)."""
    return [((1 - t) * a.astype(np.float32) + t * b.astype(np.float32)).astype(np.uint8) for t in np.linspace(0, 1, n + 2)[1:-1]]
