"""Task registry: a task is one class registered by name; adding a task touches one file.

A task declares how decoded frames become its model input (`frame_spec`), which Arrow columns it adds to
clips/ (`output_fields`), and turns a batch of clips' frames into those columns (`predict`).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar, Protocol

import pyarrow as pa
import torch

from vidbatch.config import TaskConfig
from vidbatch.decode import FrameSpec


class ClipTask(Protocol):
    name: ClassVar[str]

    @classmethod
    def frame_spec(cls, cfg: TaskConfig) -> FrameSpec: ...

    @classmethod
    def output_fields(cls, cfg: TaskConfig) -> list[pa.Field]: ...

    def __init__(self, cfg: TaskConfig, device: torch.device, storage_options: dict | None = None) -> None: ...

    def predict(self, frames: torch.Tensor, clip_lengths: list[int], batch_size: int) -> dict[str, list]:
        """frames: (N, H, W, 3) uint8 on the task's device, clips' frames back to back."""
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


from vidbatch.tasks import classify, head  # noqa: E402,F401  (registers built-in tasks)
