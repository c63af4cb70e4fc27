"""Clips whose label is the order of their content: one photo, then another, or the other way round.

Each clip shows a random crop of one photo (from scikit-image's sample data) for its first half and a random crop
of the other for its second half; its label names the photo that comes first. A clip's mean embedding is the same
either way (the mean of the two halves), so only a model that reads the frames in order can tell the labels apart.
Also the plain-colour videos of the events test.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from videos import make_video

PHOTOS = ("astronaut", "coffee")


def _photo(name: str) -> Image.Image:
    import skimage.data

    return Image.fromarray(getattr(skimage.data, name)())


def random_crop(photo: Image.Image, rng: np.random.Generator, size: int) -> np.ndarray:
    """A square crop of 50-90 % of the photo's short side at a random place, scaled to size x size."""
    side = int(min(photo.size) * rng.uniform(0.5, 0.9))
    left = int(rng.integers(0, photo.width - side + 1))
    top = int(rng.integers(0, photo.height - side + 1))
    return np.asarray(photo.crop((left, top, left + side, top + side)).resize((size, size), Image.BILINEAR))


def make_order_archive(
    root: Path, videos: int = 2, clips_per_video: int = 60, frames_per_half: int = 4, fps: int = 10, size: int = 256,
    seed: int = 0,
) -> dict[tuple[str, int], str]:
    """Videos of back-to-back clips (2 x frames_per_half frames each: clip_seconds = 2 * frames_per_half / fps);
    returns {(file name, clip index): label}, label `<photo>_first`."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    photos = [_photo(p) for p in PHOTOS]
    labels = {}
    for v in range(videos):
        name = f"order{v}.mp4"
        frames = []
        for c in range(clips_per_video):
            first = int(rng.integers(0, 2))
            a, b = random_crop(photos[first], rng, size), random_crop(photos[1 - first], rng, size)
            frames += [a] * frames_per_half + [b] * frames_per_half
            labels[(name, c)] = f"{PHOTOS[first]}_first"
        make_video(root / name, fps=fps, width=size, height=size, frames=frames)
    return labels


def make_colour_video(path: Path, colours: list[tuple[tuple[int, int, int], float]], fps: int = 10, size: int = 128) -> Path:
    """Plain colour for each (rgb, seconds) in turn, with a little noise so frames are not all identical."""
    rng = np.random.default_rng(len(colours))
    frames = []
    for rgb, seconds in colours:
        for _ in range(round(seconds * fps)):
            noise = rng.integers(-6, 7, (size, size, 3))
            frames.append(np.clip(np.asarray(rgb)[None, None] + noise, 0, 255).astype(np.uint8))
    return make_video(path, fps=fps, width=size, height=size, frames=frames)
