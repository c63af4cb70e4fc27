"""Task registry API: a task is one class registered by name; adding a task touches one file.

A task declares how decoded frames become its model input (`frame_spec`), whether it samples its own frames
(`own_samples`), which Arrow columns it adds to clips/ (`output_fields`), and turns a batch of clips' frames into
those columns (`predict`), copying its results off the device once per batch. A task that writes `embedding` also
returns `frame_embeddings` (per clip, one vector per frame), which the job keeps with out.frame_embeddings. All tasks of a job read one decode (vidbatch/plan/frame_plan.py).
"""
from __future__ import annotations

from typing import ClassVar, Protocol

import pyarrow as pa
import torch

from vidbatch.config import TaskConfig
from vidbatch.core.registry import Registry
from vidbatch.infer.frame_views import FrameGeometry
from vidbatch.plan.frame_plan import FrameSpec, StackSampling, job_frame_spec


class ClipTask(Protocol):
    name: ClassVar[str]
    precisions: ClassVar[frozenset[str]]  # autocast precisions (inference.precision) the model stays correct under

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
        out as `geometry` says (None: already the task's own frame_spec). batch_size: frames per forward pass."""
        ...

    def largest_forward(self, batch_size: int, clip_lengths: list[int]) -> int:
        """Frames in the largest forward pass `predict` runs at this batch_size: out of memory halves batch_size
        only while this shrinks."""
        ...


TASKS: Registry[type[ClipTask]] = Registry("task")
register_task = TASKS.register
get_task = TASKS.lookup


def task_output_fields(tasks: list[TaskConfig]) -> list[pa.Field]:
    fields: list[pa.Field] = []
    writer: dict[str, int] = {}
    for i, t in enumerate(tasks):
        new = get_task(t.task).output_fields(t)
        clash = [f.name for f in new if f.name in writer]
        if clash:
            j = writer[clash[0]]
            raise ValueError(
                f"tasks.{i} ({t.task}) would write columns {clash} that tasks.{j} ({tasks[j].task}) already writes; "
                "each column is written once per job, so keep one of them (classify's columns include embed's)"
            )
        writer.update({f.name: i for f in new})
        fields.extend(new)
    return fields


def frame_spec_for(tasks: list[TaskConfig]) -> FrameSpec:
    """The one frame geometry every task reads (each clip is decoded once; vidbatch/plan/frame_plan.py)."""
    return job_frame_spec([get_task(t.task).frame_spec(t) for t in tasks])


def task_stacks(tasks: list[TaskConfig]) -> tuple[StackSampling | None, ...]:
    """Each task's own sample times (None: it reads the job's samples)."""
    return tuple(get_task(t.task).own_samples(t) for t in tasks)
