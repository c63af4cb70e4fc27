"""How many clips go to the inference actor per Ray call: decided on the driver, which imports no torch, so this
lives apart from the actor."""
from __future__ import annotations

from typing import Literal

from vidbatch.config import InferenceConfig

# CPU: small batches stay in cache; bare MobileNetV2 on one thread here ran 50.7 images/s at 4, 27.6 at 16
# (benchmarks/README.md, "After the issue 12 and 13 merges")
DEFAULT_FORWARD_BATCH = {"cuda": 64, "cpu": 4}
FRAMES_PER_GPU_CALL = 512  # per Ray call to a GPU actor: Ray's per-call cost must not leave the GPU idle between calls


def clips_per_call(cfg: InferenceConfig, device: Literal["cpu", "cuda"], frames_per_clip: int) -> int:
    """Ray Data's batch size for the actor pool, in clips: frames_per_call, by default 512 frames on a GPU and one
    forward batch on the CPU (which is busy anyway; small calls reach the writer sooner), never below one forward."""
    forward = cfg.batch_size or DEFAULT_FORWARD_BATCH[device]
    frames = cfg.frames_per_call or (FRAMES_PER_GPU_CALL if device == "cuda" else forward)
    return max(1, max(frames, forward) // frames_per_clip)
