"""Where a model runs, and how frames get there: one rule for inference actors and shot detectors."""
from __future__ import annotations

from typing import Literal

import numpy as np
import torch


def pick_device(device: Literal["auto", "cpu", "cuda"]) -> torch.device:
    return torch.device("cuda" if device == "cuda" or (device == "auto" and torch.cuda.is_available()) else "cpu")


def to_device(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """Pinned host memory lets the copy to a GPU overlap compute; on the CPU the array is used in place."""
    tensor = torch.from_numpy(array)
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor
