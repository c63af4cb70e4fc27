"""Task registry API: a task is one class registered by name; adding a task touches one file.

A task declares how decoded frames become its model input (`frame_spec`), whether it samples its own frames
(`own_samples`), which Arrow columns it adds to clips/ (`output_fields`), and turns a batch of clips' frames into
those columns (`predict`), copying its results off the device once per batch. A task that writes `embedding` also
returns `frame_embeddings` (per clip, one vector per frame), which the job keeps with out.frame_embeddings. All tasks of a job read one decode (vidbatch/plan/frame_plan.py).

The built-in tasks import torch and torchvision; the driver and the decode workers must not (seconds and ~700 MB
each). So this module imports neither: a built-in task's module is imported on first lookup, and what the driver
asks of a task config (`task_info`: frame spec, own samples, output columns) is kept in an on-disk cache
(`info_cache.py`), so that only the first run of a task config on a machine imports torch in the driver.
"""
from __future__ import annotations

import base64
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, ClassVar, Protocol

import pyarrow as pa

from vidbatch.config import TaskConfig
from vidbatch.core.registry import Registry
from vidbatch.infer.tasks import info_cache
from vidbatch.plan.frame_plan import FrameSpec, StackSampling, job_frame_spec

if TYPE_CHECKING:
    import torch

    from vidbatch.infer.frame_views import FrameGeometry


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


BUILTIN_TASKS = ("classify", "embed", "head", "detect", "segment", "action")  # each in vidbatch/infer/tasks/<name>.py
TASKS: Registry[type[ClipTask]] = Registry("task", builtin={n: f"vidbatch.infer.tasks.{n}" for n in BUILTIN_TASKS})
register_task = TASKS.register
get_task = TASKS.lookup


@dataclass(frozen=True)
class TaskInfo:
    """What the driver needs of one task config: its canvas, its own sample stack, its clips/ columns."""

    frame_spec: FrameSpec
    own_samples: StackSampling | None
    output_fields: list[pa.Field]

    def to_dict(self) -> dict:
        schema = pa.schema(self.output_fields).serialize().to_pybytes()
        return {
            "frame_spec": asdict(self.frame_spec),
            "own_samples": None if self.own_samples is None else asdict(self.own_samples),
            "output_fields": base64.b64encode(schema).decode(),
        }

    @classmethod
    def from_dict(cls, d: dict) -> TaskInfo:
        schema = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(d["output_fields"])))
        own = d["own_samples"]
        return cls(FrameSpec(**d["frame_spec"]), None if own is None else StackSampling(**own), list(schema))


def task_info(cfg: TaskConfig) -> TaskInfo:
    """From the cache for a built-in task, else from the task class (imports it, and torch; stored when cacheable).
    A `head` task reads its head file, which can change under the same config: never cached. Errors (a bad model
    or weights name) are raised, never cached."""
    cacheable = cfg.task in BUILTIN_TASKS and cfg.head_path is None
    key = info_cache.key_for(cfg.model_dump(mode="json")) if cacheable else None
    if key is not None and (hit := info_cache.read(key)) is not None:
        return TaskInfo.from_dict(hit)
    cls = get_task(cfg.task)
    info = TaskInfo(cls.frame_spec(cfg), cls.own_samples(cfg), cls.output_fields(cfg))
    if key is not None:
        info_cache.write(key, info.to_dict())
    return info


def task_output_fields(tasks: list[TaskConfig]) -> list[pa.Field]:
    fields: list[pa.Field] = []
    writer: dict[str, int] = {}
    for i, t in enumerate(tasks):
        new = task_info(t).output_fields
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
    return job_frame_spec([task_info(t).frame_spec for t in tasks])


def task_stacks(tasks: list[TaskConfig]) -> tuple[StackSampling | None, ...]:
    """Each task's own sample times (None: it reads the job's samples)."""
    return tuple(task_info(t).own_samples for t in tasks)
