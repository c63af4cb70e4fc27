"""Videos of two visually distinct kinds (fine moving stripes vs. smooth warm gradients with a blob), for tests
that need embeddings to separate content: search and custom heads."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from videos import make_video

KINDS = ("stripes", "gradient")


def kind_frames(kind: str, variant: int, n: int, width: int, height: int) -> list[np.ndarray]:
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    frames = []
    for i in range(n):
        if kind == "stripes":
            period = 6 + 2 * variant
            v = ((xx + yy * (0.5 + 0.3 * variant) + 2 * i) // (period / 2)) % 2
            img = np.stack([v * 255, v * (200 + 20 * variant), v * 255], axis=-1)
        else:
            cx, cy = width * (0.3 + 0.02 * i), height * (0.4 + 0.1 * variant)
            blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * (height / 5) ** 2))
            img = np.stack(
                [200 + 55 * blob, 80 + 60 * yy / height + 40 * variant + 60 * blob, 30 + 40 * blob + 0 * xx], axis=-1
            )
        frames.append(np.clip(img, 0, 255).astype(np.uint8))
    return frames


def make_kind_archive(root: Path, per_kind: int = 3, seconds: float = 3.0, fps: int = 10) -> dict[str, str]:
    """per_kind videos of each kind (192x144) plus a corrupt file; returns {file name: kind}."""
    root.mkdir(parents=True, exist_ok=True)
    kinds = {}
    for kind in KINDS:
        for v in range(per_kind):
            name = f"{kind}{v}.mp4"
            make_video(root / name, fps=fps, width=192, height=144, frames=kind_frames(kind, v, round(seconds * fps), 192, 144))
            kinds[name] = kind
    (root / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    return kinds
