"""One decode for every task of a job: the shared frame geometry and the tasks' own sample times.

Each clip is decoded once. Its kept frames go into one canvas geometry (`job_frame_spec`) from which every task
cuts its own input on the device (vidbatch/infer/frame_views.py). A task may also ask for its own sample times (an
action model needs a contiguous stack of T frames at its training rate): those are appended to the clip's planned
samples, so the decoder serves the union of all tasks' times in one in-order pass, and they travel in fixed slots
after the job's K shared slots, so the frames tensor keeps one shape per job.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace

import numpy as np

from vidbatch.plan.clips import ClipPlan, WorkUnit


@dataclass(frozen=True)
class FrameSpec:
    """How a kept frame is turned into model input: scale the short side (in libswscale), then centre-crop.

    letterbox: scale the long side to `crop` instead and pad bottom/right to a crop x crop canvas, so tasks that
    need the whole frame (detect, segment, action) and cropping tasks read one decode (vidbatch/infer/frame_views.py).
    """

    resize_short: int
    crop: int
    letterbox: bool = False

    def scaled_size(self, width: int, height: int) -> tuple[int, int]:
        if self.letterbox:
            scale = self.crop / max(width, height)
            return max(1, min(self.crop, round(width * scale))), max(1, min(self.crop, round(height * scale)))
        scale = self.resize_short / min(width, height)
        return max(self.crop, round(width * scale)), max(self.crop, round(height * scale))


DEFAULT_FRAME_SPEC = FrameSpec(resize_short=256, crop=224)  # ImageNet's classic preprocessing


@dataclass(frozen=True)
class StackSampling:
    """`frames` consecutive samples at `fps`, centred in the clip and clamped to its planned sample range
    (frames repeat at the edges when the stack is longer than the clip)."""

    frames: int
    fps: float

    def times(self, clip: ClipPlan) -> tuple[float, ...]:
        lo = min(clip.start_s, clip.sample_times_s[0])
        hi = max(clip.sample_times_s)
        first = (clip.start_s + clip.end_s) / 2 - self.frames / (2 * self.fps)
        return tuple(min(hi, max(lo, first + j / self.fps)) for j in range(self.frames))


def job_frame_spec(specs: list[FrameSpec]) -> FrameSpec:
    """Tasks that agree on one spec get it (a classify-only job decodes exactly as before); otherwise one letterboxed
    canvas whose side is the largest size any task asks for (a cropping task's resize size, a full-frame task's side)."""
    unique = set(specs)
    if not unique:
        return DEFAULT_FRAME_SPEC
    if len(unique) == 1:
        return unique.pop()
    side = max(s.crop if s.letterbox else s.resize_short for s in unique)
    return FrameSpec(resize_short=side, crop=side, letterbox=True)


@dataclass(frozen=True)
class FrameLayout:
    """Slots of a clip's frame axis: the job's shared samples first, then each sampling task's stack in task order."""

    shared: int  # K
    stacks: tuple[StackSampling | None, ...]  # per task; None: the task reads the shared samples

    @property
    def total(self) -> int:
        return self.shared + sum(s.frames for s in self.stacks if s)

    def slots(self, task_index: int) -> slice | None:
        """The task's own slots, or None when it reads the shared ones."""
        if self.stacks[task_index] is None:
            return None
        start = self.shared + sum(s.frames for s in self.stacks[:task_index] if s)
        return slice(start, start + self.stacks[task_index].frames)

    def with_task_samples(self, unit: WorkUnit) -> WorkUnit:
        """The unit with every clip's stack times appended to its planned samples (decoded in the same pass)."""
        if not any(self.stacks):
            return unit
        clips = tuple(
            replace(c, sample_times_s=c.sample_times_s + tuple(t for s in self.stacks if s for t in s.times(c)))
            for c in unit.clips
        )
        return replace(unit, clips=clips)

    def place(self, frames: np.ndarray, times: tuple[float, ...]) -> tuple[np.ndarray, tuple[float, ...]]:
        """A decoded clip (shared samples, then the stacks' frames) at its slots, and its shared samples' times."""
        stacked = self.total - self.shared
        if not stacked:
            return frames, times
        n = len(frames) - stacked
        out = np.zeros((self.total, *frames.shape[1:]), dtype=frames.dtype)
        out[:n], out[self.shared :] = frames[:n], frames[n:]
        return out, times[:n]

    @classmethod
    def shared_from_total(cls, total: int, stacks: tuple[StackSampling | None, ...]) -> FrameLayout:
        """The layout of a frames batch whose frame axis has `total` slots (the actor knows only the tasks)."""
        shared = total - sum(s.frames for s in stacks if s)
        if shared < 0:
            raise ValueError(f"frames batch has {total} slots, fewer than the tasks' stacks need")
        return cls(shared, stacks)


def stack_from_docs(docs: str) -> StackSampling | None:
    """torchvision documents its Kinetics evaluation as `frame_rate=15`, `clip_len=16` in the weights' _docs."""
    rate = re.search(r"frame_rate=([\d.]+)", docs)
    length = re.search(r"clip_len=(\d+)", docs)
    if not rate or not length:
        return None
    return StackSampling(frames=int(length.group(1)), fps=float(rate.group(1)))
