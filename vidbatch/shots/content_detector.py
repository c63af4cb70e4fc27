"""`content`: PySceneDetect's ContentDetector idea on the 48x27 frames, no weights, CPU only.

The score of frame i is the mean absolute HSV difference to frame i-1 (hue, saturation and value weighted
equally, 0-255 each); a score at or above the threshold starts a new shot at frame i. A gradual transition
(fade, dissolve) spreads its change over many frames, so each step stays under the threshold and the shots on
both sides stay one shot; a fast fade of a few frames can cross it at its steepest frame.
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from PIL import Image

from vidbatch.shots.registry import (
    Shot,
    ShotDetector,
    as_chunks,
    merge_short_shots,
    register_detector,
)


def hsv_frames(frames: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) RGB -> HSV in one Pillow call over the frames stacked into one tall image."""
    n, h, w, _ = frames.shape
    hsv = Image.fromarray(np.ascontiguousarray(frames).reshape(n * h, w, 3), "RGB").convert("HSV")
    return np.asarray(hsv).reshape(n, h, w, 3)


def content_scores(frames: np.ndarray | Iterable[np.ndarray]) -> np.ndarray:
    """(N,) float32: score[i] = mean |HSV(i) - HSV(i-1)|; score[0] = 0. Chunks are scored as they come, carrying
    one frame over, so only the scores (4 bytes a frame) grow with the video."""
    previous: np.ndarray | None = None
    out = []
    for chunk in as_chunks(frames):
        if len(chunk) == 0:
            continue
        hsv = hsv_frames(chunk).astype(np.int16)
        joined = hsv if previous is None else np.concatenate([previous, hsv])
        scores = np.abs(np.diff(joined, axis=0)).mean(axis=(1, 2, 3)).astype(np.float32)
        out.append(np.concatenate([np.zeros(1, np.float32), scores]) if previous is None else scores)
        previous = hsv[-1:]
    return np.concatenate(out) if out else np.zeros(0, np.float32)


@register_detector("content")
class ContentDetector(ShotDetector):
    default_threshold = 27.0  # PySceneDetect's default for the same score scale
    threshold_bounds = (0.0, 255.0)
    default_min_shot_frames = 15  # PySceneDetect's min_scene_len
    needs_model = False
    lowest_useful_threshold = 1.0  # below it nearly every frame of real footage is a cut

    @classmethod
    def check_options(cls, threshold: float | None, min_shot_frames: int | None) -> None:
        super().check_options(threshold, min_shot_frames)
        if threshold is not None and threshold < cls.lowest_useful_threshold:
            raise ValueError(
                f"threshold {threshold:g} is below {cls.lowest_useful_threshold:g} for detector content, whose scores are "
                f"mean HSV differences on a 0-255 scale (default {cls.default_threshold:g}); a probability like 0.5 is "
                "on transnetv2's scale, and here would cut at nearly every frame"
            )

    def detect(self, frames: np.ndarray | Iterable[np.ndarray]) -> list[Shot]:
        scores = content_scores(frames)
        starts = [0, *np.flatnonzero(scores >= self.threshold).tolist()]
        ends = [s - 1 for s in starts[1:]] + [len(scores) - 1]
        shots = [Shot(s, e, float(scores[s]) if s else None) for s, e in zip(starts, ends)]
        return merge_short_shots(shots, self.min_shot_frames)
