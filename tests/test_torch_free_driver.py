"""torch stays out of every process that runs no model (issue 12): the driver, probe and decode workers. It costs
about 3 s and 700 MB per process here. Also: the task-info cache that lets the driver plan without torch, and the
probe on the driver for few videos, which must plan what the Ray-task probe plans."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vidbatch.config import TaskConfig
from vidbatch.infer.tasks import TaskInfo, get_task, task_info
from vidbatch.infer.tasks import info_cache

ROOT = Path(__file__).resolve().parents[1]


def _python(code: str, env: dict[str, str] | None = None, timeout: float = 300) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout.strip().splitlines()[-1]


def test_driver_modules_do_not_import_torch():
    code = "import sys, vidbatch, vidbatch.cli, vidbatch.job, vidbatch.pipeline; print(sorted({'torch', 'torchvision'} & set(sys.modules)))"
    assert _python(code) == "[]"


@pytest.mark.parametrize(
    "cfg",
    [
        TaskConfig(),  # classify, mobilenet_v2, IMAGENET1K_V1
        TaskConfig(task="embed", model="resnet18", weights="IMAGENET1K_V1"),
        TaskConfig(task="action", model="r3d_18", weights="KINETICS400_V1"),  # has its own sample stack
    ],
    ids=["classify", "embed", "action"],
)
def test_cached_task_info_is_what_the_task_class_says(cfg, tmp_path, monkeypatch):
    monkeypatch.setenv(info_cache.CACHE_ENV, str(tmp_path))
    cls = get_task(cfg.task)
    direct = TaskInfo(cls.frame_spec(cfg), cls.own_samples(cfg), cls.output_fields(cfg))
    assert task_info(cfg) == direct  # a miss: computed, then stored
    assert len(list((tmp_path / "task-info").glob("*.json"))) == 1
    assert TaskInfo.from_dict(json.loads(json.dumps(direct.to_dict()))) == direct
    assert task_info(cfg) == direct  # a hit


def test_task_errors_are_raised_and_never_cached(tmp_path, monkeypatch):
    monkeypatch.setenv(info_cache.CACHE_ENV, str(tmp_path))
    for _ in range(2):
        with pytest.raises(ValueError, match="has no weights 'NOPE'"):
            task_info(TaskConfig(weights="NOPE"))
    assert not list(tmp_path.glob("task-info/*.json"))


def test_a_run_imports_torch_only_in_the_inference_actor(ray_session, mobilenet_weights, tmp_path, monkeypatch):
    """A whole run in a fresh driver process (probe in Ray tasks, decode tasks, the classify actor), then tasks on
    the idle workers that probed and decoded: neither the driver nor those workers hold torch."""
    from videos import make_video

    monkeypatch.setenv(info_cache.CACHE_ENV, str(tmp_path / "cache"))
    task = {"task": "classify", "weights_path": mobilenet_weights}
    task_info(TaskConfig(**task))  # warm the cache, as any earlier run of this config on the machine does
    (tmp_path / "in").mkdir()
    make_video(tmp_path / "in" / "a.mp4", seconds=2.0, fps=10)
    job = {"inputs": [str(tmp_path / "in")], "output": str(tmp_path / "out"), "tasks": [task],
           "probe": {"driver_max_videos": 0}, "ray": {"num_cpus": 2}}
    code = f"""
import json, sys, time, ray, vidbatch
summary = vidbatch.run({job!r}, verbose=False)
driver = 'torch' in sys.modules

@ray.remote(num_cpus=0.5)
def modules():
    time.sleep(0.5)  # several at once: every idle worker takes one
    return [m in sys.modules for m in ('torch', 'vidbatch.plan.prepare', 'vidbatch.decode.decode_stage')]

workers = ray.get([modules.remote() for _ in range(6)])
print(json.dumps({{"clips": summary.counts.clips, "driver_torch": driver, "workers": workers}}))
"""
    out = json.loads(_python(code, {info_cache.CACHE_ENV: str(tmp_path / "cache")}))
    assert out["clips"] == 1
    assert out["driver_torch"] is False
    assert any(prepare and decode for _, prepare, decode in out["workers"])  # the check reached a worker that probed and decoded
    assert not any(torch for torch, _, _ in out["workers"]), out["workers"]


def _rows(out: str) -> tuple[list, list]:
    import vidbatch

    clips = vidbatch.read(out, columns=["video_uri", "clip_index", "start_s", "end_s", "frame_times_s"]).to_pylist()
    videos = vidbatch.read(out, table="videos", columns=["video_uri", "status", "duration_s", "frame_count", "clip_count"]).to_pylist()
    key = lambda r: (r["video_uri"], r.get("clip_index", 0))  # noqa: E731
    return sorted(clips, key=key), sorted(videos, key=key)


def test_probing_on_the_driver_plans_what_ray_tasks_plan(ray_session, video_dir, tmp_path):
    """The corrupt file's probe error included: both paths run the same PrepareStage."""
    import vidbatch

    results = []
    for limit in (0, 8):
        out = str(tmp_path / f"out{limit}")
        summary = vidbatch.run({"inputs": [str(video_dir)], "output": out, "tasks": [],
                                "probe": {"driver_max_videos": limit}}, verbose=False)
        results.append((summary.counts.errors, _rows(out)))
    assert results[0] == results[1]
    assert results[0][0] == 1 and len(results[0][1][1]) == 4  # the corrupt file's error; 3 good videos + the corrupt one
