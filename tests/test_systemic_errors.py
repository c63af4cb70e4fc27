"""Systemic failures end the run (exit 1, resumable) instead of posing as bad input: programming errors, CUDA
errors, out-of-memory at the smallest forward, one error type across clips of several videos. Input-caused
failures stay per clip (or per video) error rows. No Ray: the stages are called directly."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vidbatch.config import InferenceConfig, ShotsConfig, TaskConfig
from vidbatch.core.faults import SystemicError
from vidbatch.decode.decode_stage import DecodeStage, frames_batch
from vidbatch.infer.actor import ClipInferenceActor
from vidbatch.plan.clips import ClipPlan, WorkUnit
from vidbatch.plan.frame_plan import FrameSpec

SPEC = FrameSpec(resize_short=256, crop=224)


def clip_row(i: int, value: int, video: str = "v") -> dict:
    return {"video_id": video, "video_uri": f"{video}.mp4", "clip_id": f"{video}{i}", "clip_index": i,
            "start_s": float(i), "end_s": i + 1.0, "frames": np.full((2, 224, 224, 3), value, np.uint8),
            "frame_times_s": [i, i + 0.5]}


class Raising:
    """A task whose predict raises `error` on clips holding a frame of `value` (any clip when value is None)."""

    def __init__(self, error: BaseException, value: int | None = None):
        self.error, self.value = error, value

    def largest_forward(self, batch_size: int, clip_lengths: list[int]) -> int:
        return min(batch_size, sum(clip_lengths))

    def predict(self, frames, lengths, batch_size, geometry=None):
        if self.value is None or bool((frames == self.value).all(dim=(1, 2, 3)).any()):
            raise self.error
        n = len(lengths)
        return {"model": ["t"] * n, "labels": [["x"]] * n, "scores": [[1.0]] * n,
                "embedding": [np.zeros(1280, np.float32)] * n}


@pytest.fixture(scope="module")
def actor(mobilenet_weights):
    return ClipInferenceActor([TaskConfig(weights_path=mobilenet_weights, top_k=2)], InferenceConfig(batch_size=4))


def run_with(actor, task, rows):
    real = actor.tasks
    actor.tasks = [task]
    try:
        return actor(frames_batch(rows, k=2, spec=SPEC))
    finally:
        actor.tasks = real


@pytest.mark.parametrize("error", [TypeError("bad operand"), AttributeError("no attribute"), NameError("x"),
                                   ImportError("no module"), AssertionError("invariant")])
def test_a_programming_error_ends_the_run_instead_of_becoming_infer_rows(actor, error):
    with pytest.raises(type(error)):
        run_with(actor, Raising(error), [clip_row(0, 10), clip_row(1, 20, "w")])
    with pytest.raises(type(error)):  # also when only one clip of the batch hits it
        run_with(actor, Raising(error, value=20), [clip_row(0, 10), clip_row(1, 20, "w")])


def test_a_cuda_error_ends_the_run(actor):
    with pytest.raises(torch.AcceleratorError):
        run_with(actor, Raising(torch.AcceleratorError("CUDA error: an illegal memory access was encountered")),
                 [clip_row(0, 10)])


def test_out_of_memory_at_the_smallest_forward_ends_the_run(actor):
    with pytest.raises(torch.OutOfMemoryError):
        run_with(actor, Raising(torch.OutOfMemoryError("CUDA out of memory")), [clip_row(0, 10), clip_row(1, 20)])


def test_one_error_type_across_clips_of_several_videos_is_systemic(actor):
    with pytest.raises(SystemicError, match="ValueError"):
        run_with(actor, Raising(ValueError("model cannot take this")), [clip_row(0, 10), clip_row(1, 20, "w")])


def test_an_input_caused_error_stays_one_infer_row(actor):
    rows = run_with(actor, Raising(ValueError("odd frame"), value=20),
                    [clip_row(0, 10), clip_row(1, 20, "w"), clip_row(2, 30)]).to_pylist()
    assert [r["error_stage"] for r in rows] == [None, "infer", None]
    assert rows[1]["error_type"] == "ValueError" and rows[0]["labels"] == ["x"] and rows[2]["labels"] == ["x"]
    # every clip of one video failing is still that video's problem, not the run's
    rows = run_with(actor, Raising(ValueError("odd video")), [clip_row(0, 10), clip_row(1, 20)]).to_pylist()
    assert [r["error_stage"] for r in rows] == ["infer", "infer"]


def unit(tmp_path) -> WorkUnit:
    plan = ClipPlan(clip_id="c0", clip_index=0, start_s=0.0, end_s=1.0, sample_times_s=(0.5,))
    return WorkUnit(uri=str(tmp_path / "v.mp4"), video_id="v", unit_index=0, start_offset_s=0.0,
                    keyframe_interval_s=1.0, clips=(plan,))


def decode_rows(monkeypatch, tmp_path, error: BaseException) -> list[dict]:
    def failing(*args, **kwargs):
        raise error
        yield  # a generator, as decode_unit is

    monkeypatch.setattr("vidbatch.decode.decode_stage.decode_unit", failing)
    stage = DecodeStage(SPEC, "auto", 1, 1)
    return list(stage({"unit_json": np.array([json.dumps(unit(tmp_path).to_dict())])}))


def test_decode_stage_raises_programming_errors_and_keeps_broken_files_as_rows(monkeypatch, tmp_path):
    with pytest.raises(TypeError):
        decode_rows(monkeypatch, tmp_path, TypeError("unsupported operand"))
    (batch,) = decode_rows(monkeypatch, tmp_path, ValueError("broken stream"))
    assert batch["error_stage"].tolist() == ["decode"] and batch["error_type"].tolist() == ["ValueError"]


class BrokenDetector:
    def __init__(self, error: BaseException):
        self.error = error

    def chunk_predictions(self, frames):
        raise self.error


def shot_batch() -> dict:
    rows = [{"video_json": json.dumps({"uri": f"{v}.mp4", "video_id": v}), "chunk_index": 0, "last": True,
             "n_frames": 2, "frames": bytes(100 * 27 * 48 * 3), "frame_times": b"", "predictions": b"",
             "shots_json": "", "error_json": ""} for v in ("a", "b")]
    return {k: np.array([r[k] for r in rows], dtype=object) for k in rows[0]}


def test_shot_model_stage_raises_systemic_errors(monkeypatch):
    from vidbatch.shots import stages

    monkeypatch.setattr(stages, "build_detector", lambda cfg: BrokenDetector(TypeError("bug")))
    actor = stages.ShotModelActor(ShotsConfig(device="cpu", num_cpus=torch.get_num_threads()))
    with pytest.raises(TypeError):
        actor(shot_batch())
    actor.detector = BrokenDetector(torch.OutOfMemoryError("CUDA out of memory"))
    with pytest.raises(torch.OutOfMemoryError):
        actor(shot_batch())
    actor.detector = BrokenDetector(ValueError("odd video"))  # input-caused: error rows
    out = actor(shot_batch())
    assert [json.loads(e)["stage"] for e in out["error_json"]] == ["infer", "infer"]


def test_shot_decode_stage_raises_programming_errors(monkeypatch):
    from vidbatch.shots import stages

    def bug(*args, **kwargs):
        raise AttributeError("bug")

    monkeypatch.setattr(stages, "iter_lowres", bug)
    with pytest.raises(AttributeError):
        next(stages.ShotDecodeStage(ShotsConfig(detector="content"))({"video_json": json.dumps({"uri": "a.mp4", "video_id": "a"})}))
