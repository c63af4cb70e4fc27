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
from vidbatch.core.schema import RESULT_ERROR_FIELDS, result_schema
from vidbatch.decode.decode_stage import Batch, result_table
from vidbatch.infer.frame_views import FrameGeometry
from vidbatch.infer.tasks import (
    frame_spec_for,
    get_task,
    task_output_fields,
    task_stacks,
)
from vidbatch.plan.frame_plan import (
    FrameLayout,
)

DEFAULT_FORWARD_BATCH = {"cuda": 64, "cpu": 16}
FRAMES_PER_ACTOR_CALL = 64  # frames handed to an actor per call when batch_size is not set


class ClipInferenceActor:
    """Frames batch in, result table out (clip keys, error pass-through, every task's columns)."""

    def __init__(self, tasks: list[TaskConfig], cfg: InferenceConfig, storage_options: dict[str, Any] | None = None):
        self.device = pick_device(cfg.device)
        if self.device.type == "cpu":
            torch.set_num_threads(cfg.threads or max(1, int(cfg.num_cpus)))
        self.batch_size = cfg.batch_size or DEFAULT_FORWARD_BATCH[self.device.type]
        self.autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.precision)
        self.schema = result_schema(task_output_fields(tasks))
        self.spec = frame_spec_for(tasks)
        self.stacks = task_stacks(tasks)
        self.tasks = [get_task(t.task)(t, self.device, storage_options) for t in tasks]

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.device.type == "cuda" and self.autocast_dtype is not None:
            return torch.autocast("cuda", dtype=self.autocast_dtype)
        return contextlib.nullcontext()

    def _predict(
        self, task: Any, frames: torch.Tensor, lengths: list[int], geometry: FrameGeometry | None = None
    ) -> dict[str, list]:
        """Halve the forward batch on CUDA out-of-memory instead of failing the run; batch 1 OOM is systemic."""
        batch_size = self.batch_size
        while True:
            try:
                return task.predict(frames, lengths, batch_size, geometry=geometry)
            except torch.OutOfMemoryError:
                if batch_size == 1:
                    raise
                batch_size //= 2
                torch.cuda.empty_cache()

    @torch.inference_mode()
    def _infer(self, batch: Batch, rows: list[int]) -> dict[str, list]:
        """Every task's columns for the given rows of the batch."""
        lengths = batch["n_frames"][rows].tolist()
        frames = batch["frames"]
        layout = FrameLayout.shared_from_total(frames.shape[1], self.stacks)
        geometry = FrameGeometry(self.spec, tuple(tuple(wh) for wh in batch["source_wh"][rows].tolist()))
        shared: torch.Tensor | None = None  # moved to the device once for every task that reads it
        columns: dict[str, list] = {}
        with self._autocast():
            for i, task in enumerate(self.tasks):
                slots = layout.slots(i)
                if slots is None:
                    if shared is None:
                        shared = to_device(np.concatenate([frames[r, :n] for r, n in zip(rows, lengths)]), self.device)
                    columns.update(self._predict(task, shared, lengths, geometry))
                else:
                    own = to_device(np.ascontiguousarray(frames[rows, slots]).reshape(-1, *frames.shape[2:]), self.device)
                    columns.update(self._predict(task, own, [slots.stop - slots.start] * len(rows), geometry))
        return columns

    def __call__(self, batch: Batch) -> pa.Table:
        ok = np.flatnonzero(batch["error_stage"] == "").tolist()
        if not ok or not self.tasks:
            return result_table(batch, self.schema, {})
        try:
            return result_table(batch, self.schema, self._infer(batch, ok))
        except Exception:  # noqa: BLE001 - isolate the clips that fail; the rest of the batch keeps its predictions
            return self._infer_one_by_one(batch, ok)

    def _infer_one_by_one(self, batch: Batch, ok: list[int]) -> pa.Table:
        batch = {**batch, **{f.name: batch[f.name].astype(object) for f in RESULT_ERROR_FIELDS}}
        columns: dict[str, list] = {}
        for i in ok:
            try:
                part = self._infer(batch, [i])
            except Exception as e:  # noqa: BLE001 - becomes this clip's `infer` error row
                err = ErrorRow.from_exception(uri=str(batch["video_uri"][i]), stage="infer", exc=e)
                for name, value in err.result_columns().items():
                    batch[name][i] = value
                continue
            for name, values in part.items():
                columns.setdefault(name, []).extend(values)
        return result_table(batch, self.schema, columns)
