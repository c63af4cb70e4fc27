"""Task registry: a task is one class registered by name; adding a task touches one file.

A task declares how decoded frames become its model input (`frame_spec`), whether it samples its own frames
(`own_samples`), which Arrow columns it adds to clips/ (`output_fields`), and turns a batch of clips' frames into
those columns (`predict`). All tasks of a job read one decode (vidbatch/frame_plan.py).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar, Protocol

import pyarrow as pa
import torch

from vidbatch.config import TaskConfig
from vidbatch.decode import FrameSpec
from vidbatch.frame_plan import StackSampling
from vidbatch.frame_views import FrameGeometry


class ClipTask(Protocol):
    name: ClassVar[str]

    @classmethod
    def frame_spec(cls, cfg: TaskConfig) -> FrameSpec: ...

    @classmethod
    def own_samples(cls, cfg: TaskConfig) -> StackSampling | None:
        """None: the task reads the job's sampled frames."""
        ...

    @classmethod
    def output_fields(cls, cfg: TaskConfig) -> list[pa.Field]: ...

    def __init__(self, cfg: TaskConfig, device: torch.device, storage_options: dict | None = None) -> None: ...

    def predict(
        self, frames: torch.Tensor, clip_lengths: list[int], batch_size: int, geometry: FrameGeometry | None = None
    ) -> dict[str, list]:
        """frames: (N, H, W, 3) uint8 on the task's device, clips' frames back to back: the job's canvases, laid
        out as `geometry` says (None: already the task's own frame_spec)."""
        ...


TASKS: dict[str, type[ClipTask]] = {}


def register_task(name: str) -> Callable[[type[ClipTask]], type[ClipTask]]:
    def add(cls: type[ClipTask]) -> type[ClipTask]:
        if name in TASKS:
            raise ValueError(f"task {name!r} registered twice")
        cls.name = name
        TASKS[name] = cls
        return cls

    return add


def get_task(name: str) -> type[ClipTask]:
    try:
        return TASKS[name]
    except KeyError:
        raise KeyError(f"unknown task {name!r}; known: {sorted(TASKS)}") from None


from vidbatch.tasks import action, classify, detect, embed, head, segment  # noqa: E402,F401  (registers built-in tasks)
