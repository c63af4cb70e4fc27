"""The inference actor without Ray: error rows pass through, padding is ignored, out of memory halves the forward
batch (remembered per task, only where it shrinks the forward) without changing results."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from vidbatch.config import InferenceConfig, TaskConfig
from vidbatch.decode.decode_stage import frames_batch
from vidbatch.infer.actor import ClipInferenceActor
from vidbatch.plan.frame_plan import FrameSpec

SPEC = FrameSpec(resize_short=256, crop=224)


def clip_row(i: int, n: int, value: int) -> dict:
    return {"video_id": "v", "video_uri": "v.mp4", "clip_id": f"c{i}", "clip_index": i, "start_s": float(i),
            "end_s": i + 1.0, "frames": np.full((n, 224, 224, 3), value, np.uint8), "frame_times_s": [i + 0.1 * k for k in range(n)]}


@pytest.fixture(scope="module")
def actor(mobilenet_weights):
    return ClipInferenceActor([TaskConfig(weights_path=mobilenet_weights, top_k=2)], InferenceConfig(batch_size=4))


def test_error_rows_pass_through_and_padding_is_ignored(actor):
    error = {"video_id": "v", "video_uri": "v.mp4", "clip_id": "c9", "clip_index": 9, "start_s": 9.0, "end_s": 10.0,
             "error_stage": "decode", "error_type": "DecodeError", "error_message": "stream ended"}
    batch = frames_batch([clip_row(0, 3, 40), error, clip_row(1, 2, 200)], k=4, spec=SPEC)
    table = actor(batch)
    rows = table.to_pylist()
    assert [r["clip_id"] for r in rows] == ["c0", "c9", "c1"]
    assert rows[1]["error_stage"] == "decode" and rows[1]["labels"] is None and rows[1]["embedding"] is None
    assert rows[0]["frame_times_s"] == pytest.approx([0.0, 0.1, 0.2]) and len(rows[2]["frame_times_s"]) == 2
    # clip 0 alone gives the same scores: padded frames never enter the mean
    alone = actor(frames_batch([clip_row(0, 3, 40)], k=4, spec=SPEC)).to_pylist()[0]
    assert alone["scores"] == pytest.approx(rows[0]["scores"], abs=1e-6)


class OomAbove:
    """Runs out of memory in any forward pass of more than `limit` frames, like a GPU would, else predicts with
    `task` (or a stub)."""

    precisions = frozenset()

    def __init__(self, limit: int, task=None, per_clip: bool = False):
        self.limit, self.task, self.per_clip, self.seen = limit, task, per_clip, []

    def largest_forward(self, batch_size, clip_lengths):
        return min(batch_size, max(clip_lengths) if self.per_clip else sum(clip_lengths))

    def predict(self, frames, lengths, batch_size, geometry=None):
        self.seen.append(batch_size)
        if self.largest_forward(batch_size, lengths) > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return self.task.predict(frames, lengths, batch_size, geometry) if self.task else {"n": [len(lengths)]}


def with_task(actor, task):
    real, actor.tasks, actor.working_batch = actor.tasks, [task], {}
    return real


def test_out_of_memory_halves_the_batch_and_remembers_the_size_that_fit(actor):
    real = with_task(actor, OomAbove(limit=1))
    try:
        assert actor._predict(0, torch.zeros(8), [8]) == {"n": [1]}
        assert actor.tasks[0].seen == [4, 2, 1] and actor.working_batch == {0: 1}
        assert actor._predict(0, torch.zeros(8), [8]) == {"n": [1]}
        assert actor.tasks[0].seen == [4, 2, 1, 1]  # the next batch starts at the size that fit
    finally:
        actor.tasks = real
        actor.working_batch = {}


def test_halving_skips_sizes_that_run_the_same_forward(actor):
    """A per-clip task over 2-frame clips runs 2-frame forwards at batch 4 and 2 alike: 4 -> 1 directly."""
    real = with_task(actor, OomAbove(limit=1, per_clip=True))
    try:
        actor._predict(0, torch.zeros(6), [2, 2, 2])
        assert actor.tasks[0].seen == [4, 1]
        actor.tasks, actor.working_batch = [OomAbove(limit=0)], {}
        with pytest.raises(torch.OutOfMemoryError):  # at the smallest forward: systemic, goes on up
            actor._predict(0, torch.zeros(1), [1])
    finally:
        actor.tasks = real
        actor.working_batch = {}


def test_results_after_out_of_memory_equal_an_unforced_run(actor):
    batch = frames_batch([clip_row(0, 3, 40), clip_row(1, 2, 200), clip_row(2, 4, 90)], k=4, spec=SPEC)
    unforced = actor(batch).to_pylist()
    forced = OomAbove(limit=2, task=actor.tasks[0])
    real = with_task(actor, forced)
    try:
        rows = actor(batch).to_pylist()
        assert forced.seen == [4, 2] and actor.working_batch == {0: 2}
    finally:
        actor.tasks = real
        actor.working_batch = {}
    assert [r["labels"] for r in rows] == [r["labels"] for r in unforced]
    for got, want in zip(rows, unforced):
        assert got["scores"] == pytest.approx(want["scores"], abs=1e-5)
        assert np.allclose(got["embedding"], want["embedding"], atol=1e-5)


class FailsOnWhite:
    """A task that cannot handle all-white frames: only the clips that contain them may fail."""

    def predict(self, frames, lengths, batch_size, geometry=None):
        if bool((frames == 255).all(dim=(1, 2, 3)).any()):
            raise ValueError("white frame")
        return {"model": ["t"] * len(lengths), "labels": [["x"]] * len(lengths), "scores": [[1.0]] * len(lengths),
                "embedding": [np.zeros(1280, np.float32)] * len(lengths)}


def test_a_failing_clip_becomes_an_infer_error_and_the_batch_survives(actor):
    batch = frames_batch([clip_row(0, 2, 10), clip_row(1, 2, 255), clip_row(2, 2, 30)], k=4, spec=SPEC)
    real = actor.tasks
    actor.tasks = [FailsOnWhite()]
    try:
        rows = actor(batch).to_pylist()
    finally:
        actor.tasks = real
    assert [r["error_stage"] for r in rows] == [None, "infer", None]
    assert rows[1]["error_type"] == "ValueError" and rows[1]["error_message"] == "white frame"
    assert rows[0]["labels"] == ["x"] and rows[2]["labels"] == ["x"] and rows[1]["labels"] is None
