"""Batched inference over clip frames: one model load per actor, every configured task from the same frames.

A plain callable class: Ray Data runs it in an actor pool, tests call it directly. One actor runs every task on
the same frames: measured faster than one actor pool per task (benchmarks/README.md, multitask_cost.py).
"""
from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from vidbatch.config import InferenceConfig, TaskConfig
from vidbatch.core.devices import pick_device, to_device
from vidbatch.core.errors import ErrorRow
from vidbatch.core.faults import common_failure, is_systemic
from vidbatch.core.schema import RESULT_ERROR_FIELDS, result_schema
from vidbatch.decode.decode_stage import Batch, result_table
from vidbatch.infer.batching import DEFAULT_FORWARD_BATCH
from vidbatch.infer.frame_views import FrameGeometry
from vidbatch.infer.tasks import (
    ClipTask,
    frame_spec_for,
    get_task,
    task_output_fields,
    task_stacks,
)
from vidbatch.plan.frame_plan import (
    FrameLayout,
)

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def _smaller_forward(task: ClipTask, batch_size: int, lengths: list[int]) -> int | None:
    """The largest halving of batch_size that shrinks the task's largest forward pass, or None at the smallest.
    Halvings that run the same forward again would only run out of memory again: a detector takes one clip at a
    time, so with 8-frame clips batch sizes 64, 32, 16 and 8 all run 8-frame forwards (64 goes straight to 4)."""
    largest = task.largest_forward(batch_size, lengths)
    batch_size //= 2
    while batch_size >= 1 and task.largest_forward(batch_size, lengths) >= largest:
        batch_size //= 2
    return batch_size or None


class ClipInferenceActor:
    """Frames batch in, result table out (clip keys, error pass-through, every task's columns)."""

    def __init__(
        self, tasks: list[TaskConfig], cfg: InferenceConfig, storage_options: dict[str, Any] | None = None,
        frame_embeddings: bool = False,
    ):
        """frame_embeddings: also pass on the embedding task's per-frame embeddings (out.frame_embeddings)."""
        self.device = pick_device(cfg.device)
        if self.device.type == "cpu":
            torch.set_num_threads(cfg.threads or max(1, int(cfg.num_cpus)))
        self.batch_size = cfg.batch_size or DEFAULT_FORWARD_BATCH[self.device.type]
        self.working_batch: dict[int, int] = {}  # per task: the forward batch that last fit in memory
        self.precision = cfg.precision
        self.schema = result_schema(task_output_fields(tasks), frame_embeddings)
        self.spec = frame_spec_for(tasks)
        self.stacks = task_stacks(tasks)
        self.tasks = [get_task(t.task)(t, self.device, storage_options) for t in tasks]

    def _autocast(self, task: ClipTask) -> contextlib.AbstractContextManager:
        """The configured autocast on CUDA, for the tasks whose models stay correct under it."""
        dtype = AUTOCAST_DTYPES.get(self.precision)
        if self.device.type == "cuda" and dtype is not None and self.precision in task.precisions:
            return torch.autocast("cuda", dtype=dtype)
        return contextlib.nullcontext()

    def _predict(
        self, index: int, frames: torch.Tensor, lengths: list[int], geometry: FrameGeometry | None = None
    ) -> dict[str, list]:
        """Out of memory halves the task's forward batch, and the size that fits is kept for its later batches;
        out of memory at the smallest forward goes on up (systemic)."""
        task = self.tasks[index]
        batch_size = self.working_batch.get(index, self.batch_size)
        while True:
            try:
                with self._autocast(task):
                    columns = task.predict(frames, lengths, batch_size, geometry=geometry)
            except torch.OutOfMemoryError:
                smaller = _smaller_forward(task, batch_size, lengths)
                if smaller is None:
                    raise
                batch_size = smaller
            else:
                self.working_batch[index] = batch_size
                return columns
            torch.cuda.empty_cache()  # after the except: its traceback held the failed forward's tensors

    @torch.inference_mode()
    def _infer(self, batch: Batch, rows: list[int]) -> dict[str, list]:
        """Every task's columns for the given rows of the batch."""
        lengths = batch["n_frames"][rows].tolist()
        frames = batch["frames"]
        layout = FrameLayout.shared_from_total(frames.shape[1], self.stacks)
        geometry = FrameGeometry(self.spec, tuple(tuple(wh) for wh in batch["source_wh"][rows].tolist()))
        shared: torch.Tensor | None = None  # moved to the device once for every task that reads it
        columns: dict[str, list] = {}
        for i in range(len(self.tasks)):
            slots = layout.slots(i)
            if slots is None:
                if shared is None:
                    shared = to_device(np.concatenate([frames[r, :n] for r, n in zip(rows, lengths)]), self.device)
                columns.update(self._predict(i, shared, lengths, geometry))
            else:
                own = to_device(np.ascontiguousarray(frames[rows, slots]).reshape(-1, *frames.shape[2:]), self.device)
                columns.update(self._predict(i, own, [slots.stop - slots.start] * len(rows), geometry))
        return columns

    def __call__(self, batch: Batch) -> pa.Table:
        ok = np.flatnonzero(batch["error_stage"] == "").tolist()
        if not ok or not self.tasks:
            return result_table(batch, self.schema, {})
        try:
            return result_table(batch, self.schema, self._infer(batch, ok))
        except Exception as e:  # noqa: BLE001 - find the clips that fail; the rest of the batch keeps its predictions
            if is_systemic(e):
                raise
        # outside the except: the failed batch's tensors went with its traceback
        return self._infer_one_by_one(batch, ok)

    def _infer_one_by_one(self, batch: Batch, ok: list[int]) -> pa.Table:
        """Each clip alone; the ones that fail become `infer` error rows, unless every clip of several videos fails
        the same way: then the model or the code is at fault, and the run ends."""
        batch = {**batch, **{f.name: batch[f.name].astype(object) for f in RESULT_ERROR_FIELDS}}
        columns: dict[str, list] = {}
        failed: dict[int, ErrorRow] = {}
        for i in ok:
            try:
                part = self._infer(batch, [i])
            except Exception as e:  # noqa: BLE001 - becomes this clip's `infer` error row
                if is_systemic(e):
                    raise
                failed[i] = ErrorRow.from_exception(
                    uri=str(batch["video_uri"][i]), stage="infer", exc=e, video_id=str(batch["video_id"][i])
                )
                continue
            for name, values in part.items():
                columns.setdefault(name, []).extend(values)
        systemic = common_failure(list(failed.values()), len(ok))
        if systemic is not None:
            raise systemic
        for i, err in failed.items():
            for name, value in err.result_columns().items():
                batch[name][i] = value
        return result_table(batch, self.schema, columns)
