"""Shot detector registry API: a detector is one class registered by name (PySceneDetect's detector shape, torchvision's
registry style); adding a detector touches one file.

Every detector reads the same input, a video decoded once at 48x27 RGB (`lowres.py`) as consecutive chunks of
frames (a whole video in one array is one chunk), and returns shots: runs of frames between boundaries, each with
the score of the boundary that opened it. Detectors consume the chunks as they come, so memory stays flat.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np

from vidbatch.core.registry import Registry


@dataclass(frozen=True)
class Shot:
    start_frame: int
    end_frame: int  # inclusive
    boundary_score: float | None  # score of the boundary that starts this shot; None for a video's first shot

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ShotDetector(ABC):
    """Frames in, shots out. Class attributes give the defaults and bounds the config validates against."""

    name: ClassVar[str]
    default_threshold: ClassVar[float]
    threshold_bounds: ClassVar[tuple[float, float]]  # exclusive
    default_min_shot_frames: ClassVar[int]
    needs_model: ClassVar[bool]  # True: runs in an actor pool (GPU when present); False: inside the decode task

    def __init__(self, threshold: float | None = None, min_shot_frames: int | None = None) -> None:
        self.check_options(threshold, min_shot_frames)
        self.threshold = self.default_threshold if threshold is None else threshold
        self.min_shot_frames = self.default_min_shot_frames if min_shot_frames is None else min_shot_frames

    @classmethod
    def check_options(cls, threshold: float | None, min_shot_frames: int | None) -> None:
        """Raise ValueError, naming the option, for values this detector cannot use (None: its default). Each
        detector checks its own options, as PySceneDetect's do; the config is checked with this before a run."""
        low, high = cls.threshold_bounds
        if threshold is not None and not low < threshold < high:
            raise ValueError(f"threshold {threshold:g} is outside ({low:g}, {high:g}) for detector {cls.name}")
        if min_shot_frames is not None and min_shot_frames < 1:
            raise ValueError(f"min_shot_frames {min_shot_frames} must be at least 1 for detector {cls.name}")

    @abstractmethod
    def detect(self, frames: np.ndarray | Iterable[np.ndarray]) -> list[Shot]:
        """frames: (N, 27, 48, 3) uint8 RGB, every frame of the video in presentation order, in one array or as
        consecutive (n, 27, 48, 3) chunks."""


def as_chunks(frames: np.ndarray | Iterable[np.ndarray]) -> Iterable[np.ndarray]:
    """One array of frames is one chunk; anything else already is a sequence of chunks."""
    return [frames] if isinstance(frames, np.ndarray) else frames


DETECTORS: Registry[type[ShotDetector]] = Registry(
    "shot detector", builtin={"content": "vidbatch.shots.content_detector", "transnetv2": "vidbatch.shots.transnetv2_detector"}
)
register_detector = DETECTORS.register
get_detector = DETECTORS.lookup


def merge_short_shots(shots: list[Shot], min_frames: int) -> list[Shot]:
    """Drop boundaries that come fewer than min_frames after the last kept one (PySceneDetect's min_scene_len): the
    short shot joins the one before it."""
    kept: list[Shot] = []
    for shot in shots:
        if kept and shot.start_frame - kept[-1].start_frame < min_frames:
            kept[-1] = Shot(kept[-1].start_frame, shot.end_frame, kept[-1].boundary_score)
        else:
            kept.append(shot)
    return kept
