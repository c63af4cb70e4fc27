"""Shot detection: the registry API lives in `registry.py`, which imports no detector, so nothing imports back; the
built-in detectors register when first looked up (TransNetV2's module imports torch, which a fixed-clip job's
driver never needs)."""
from vidbatch.shots.registry import (
    DETECTORS,
    Shot,
    ShotDetector,
    get_detector,
    merge_short_shots,
    register_detector,
)

__all__ = ["DETECTORS", "Shot", "ShotDetector", "get_detector", "merge_short_shots", "register_detector"]
