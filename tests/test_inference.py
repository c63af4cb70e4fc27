"""The inference actor without Ray: error rows pass through, padding is ignored, OOM halves the batch."""
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
    """A task whose forward pass runs out of memory above a batch size, like a GPU would."""

    def __init__(self, limit: int):
        self.limit, self.seen = limit, []

    def predict(self, frames, lengths, batch_size, geometry=None):
        self.seen.append(batch_size)
        if batch_size > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return {"n": [len(lengths)]}


def test_out_of_memory_halves_the_batch(actor):
    task = OomAbove(limit=1)
    assert actor._predict(task, torch.zeros(1), [1]) == {"n": [1]}
    assert task.seen == [4, 2, 1]
    with pytest.raises(torch.OutOfMemoryError):
        actor._predict(OomAbove(limit=0), torch.zeros(1), [1])


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
