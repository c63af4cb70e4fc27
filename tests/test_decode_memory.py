"""The memory budget of a decode task, from its work unit (vidbatch.decode.memory)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from videos import make_video

from vidbatch.config import ClipConfig, SamplingConfig
from vidbatch.decode.memory import WORKER_BYTES, MiB, UnitShape, decode_budget, overlapping_clips
from vidbatch.plan.clips import ClipPlan, WorkUnit, plan_clips, plan_work_units
from vidbatch.plan.frame_plan import DEFAULT_FRAME_SPEC, FrameSpec
from vidbatch.plan.probe import probe_video

BLOCK = 128 * MiB  # Ray Data's default target_max_block_size
BIG_CANVAS = FrameSpec(resize_short=448, crop=448)


def _unit(clips: int, width: int = 640, height: int = 360, seconds: float = 1.0, stride: float | None = None) -> WorkUnit:
    step = stride or seconds
    plans = tuple(ClipPlan(i, f"c{i}", i * step, i * step + seconds, (i * step,)) for i in range(clips))
    return WorkUnit("v.mp4", "v", 0, 0.0, 1.0, plans, width, height)


def _shape(*args: object, **kwargs: object) -> UnitShape:
    return UnitShape.of(_unit(*args, **kwargs))


def test_the_budget_grows_with_the_frames_the_canvas_and_the_source():
    small = decode_budget(_shape(30), 8, DEFAULT_FRAME_SPEC, 1, BLOCK)
    assert small.worker == WORKER_BYTES
    assert decode_budget(_shape(30), 16, DEFAULT_FRAME_SPEC, 1, BLOCK).frames > small.frames  # a task's own stack
    assert decode_budget(_shape(30), 8, BIG_CANVAS, 1, BLOCK).frames > small.frames
    assert decode_budget(_shape(60), 8, DEFAULT_FRAME_SPEC, 1, BLOCK).frames > small.frames
    assert decode_budget(_shape(30, 3840, 2160), 8, DEFAULT_FRAME_SPEC, 1, BLOCK).decoder > 10 * small.decoder
    assert decode_budget(_shape(30), 8, DEFAULT_FRAME_SPEC, 8, BLOCK).decoder > small.decoder  # frame threads


def test_the_output_held_stops_at_the_block_size():
    """Ray Data hands a block on once it passes target_max_block_size: a longer unit holds no more than that."""
    long = decode_budget(_shape(400), 16, BIG_CANVAS, 1, BLOCK)
    longer = decode_budget(_shape(4000), 16, BIG_CANVAS, 1, BLOCK)
    assert long.total == longer.total
    assert decode_budget(_shape(400), 16, BIG_CANVAS, 1, 32 * MiB).total < long.total


def test_overlapping_clips_are_held_together():
    assert overlapping_clips(_unit(10)) == 1  # back-to-back windows
    assert overlapping_clips(_unit(10, seconds=2.0, stride=0.5)) == 4
    assert decode_budget(_shape(10, seconds=2.0, stride=0.5), 8, DEFAULT_FRAME_SPEC, 1, BLOCK).frames > decode_budget(
        _shape(10, seconds=2.0), 8, DEFAULT_FRAME_SPEC, 1, BLOCK
    ).frames


def test_a_unit_planned_without_the_source_size_is_budgeted_as_1080p():
    assert decode_budget(_shape(5, 0, 0), 8, DEFAULT_FRAME_SPEC, 1, BLOCK) == decode_budget(
        _shape(5, 1920, 1080), 8, DEFAULT_FRAME_SPEC, 1, BLOCK
    )


# Decodes the unit with the real decode stage in a fresh process and gathers its batches into blocks with Ray
# Data's own output buffer (what a Ray Data task does with a generator's batches); prints the process's peak RSS:
# VmHWM, which starts afresh at exec (ru_maxrss would keep the forking pytest process's size).
MEASURE = """
import json, sys
import numpy as np
from ray.data._internal.output_buffer import BlockOutputBuffer, OutputBlockSizeOption
from vidbatch.decode.decode_stage import DecodeStage
from vidbatch.plan.frame_plan import FrameSpec
unit_json, crop, slots, block = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
stage = DecodeStage(FrameSpec(crop, crop), "auto", 1, slots)
out = BlockOutputBuffer(OutputBlockSizeOption.of(target_max_block_size=block))
rows = 0
for batch in stage({"unit_json": np.array([unit_json], dtype=object)}):
    assert batch["error_stage"][0] == "", batch["error_message"]
    out.add_batch(batch)
    for b in out.iter_ready_blocks():
        rows += b.num_rows
out.finalize()
for b in out.iter_ready_blocks():
    rows += b.num_rows
hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"rows": rows, "peak": int(hwm.split()[1]) * 1024}))
"""


def test_decoding_a_big_unit_stays_within_its_budget(tmp_path: Path):
    """Many frames on a big canvas: more than the old fixed 512 MiB, and the measured peak stays within it."""
    video = make_video(tmp_path / "v.mp4", seconds=14.0, fps=25, width=640, height=360)
    info = probe_video(str(video))
    sampling = SamplingConfig(frames_per_clip=16)
    clips = plan_clips(info, "fp", ClipConfig(clip_seconds=1.0), sampling)
    (unit,) = plan_work_units(str(video), "v", info, clips, 60.0)
    assert (unit.width, unit.height) == (640, 360) and len(unit.clips) == 14
    budget = decode_budget(UnitShape.of(unit), 16, BIG_CANVAS, 1, BLOCK)
    assert budget.mib > 512
    run = subprocess.run(
        [sys.executable, "-c", MEASURE, json.dumps(unit.to_dict()), str(BIG_CANVAS.crop), "16", str(BLOCK)], check=False,
        capture_output=True, text=True, timeout=120, env={**os.environ, "RAY_AUTH_MODE": "disabled"},
    )
    assert run.returncode == 0, run.stderr[-3000:]
    measured = json.loads(run.stdout.splitlines()[-1])
    assert measured["rows"] == 14
    print(f"peak {measured['peak'] / MiB:.1f} MiB, budget {budget.mib} MiB")
    assert measured["peak"] <= budget.total
    # and not a budget that could never fail: the frames part is what the measurement exercises
    assert measured["peak"] > WORKER_BYTES // 4 + budget.frames // 2


@pytest.mark.parametrize("memory_mb", [1, 512, 4096])
def test_memory_mb_stays_an_override(memory_mb: int):
    from vidbatch.config import DecodeConfig

    assert DecodeConfig(memory_mb=memory_mb).memory_mb == memory_mb
    assert DecodeConfig().memory_mb == "auto"


@pytest.mark.parametrize("memory_mb", [0, -5, "big"])
def test_memory_mb_must_be_positive_or_auto(memory_mb):
    from vidbatch.config import ConfigError
    from vidbatch.job import load_config

    with pytest.raises(ConfigError, match=r"decode\.memory_mb"):
        load_config(overrides={"decode": {"memory_mb": memory_mb}})
