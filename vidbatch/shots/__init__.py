"""Shot detection: the built-in detectors, registered on import; the registry API lives in `registry.py`, which
imports no detector, so nothing imports back."""
from vidbatch.shots import content_detector, transnetv2_detector  # noqa: F401  (registers built-in detectors)
from vidbatch.shots.registry import (
    DETECTORS,
    Shot,
    ShotDetector,
    get_detector,
    merge_short_shots,
    register_detector,
)

__all__ = ["DETECTORS", "Shot", "ShotDetector", "get_detector", "merge_short_shots", "register_detector"]
