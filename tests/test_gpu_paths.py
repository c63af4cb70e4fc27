"""GPU paths on a machine without a usable GPU: what the pools ask Ray for (from the config, also on a cluster that
starts at 0 GPUs), the capacity check, and an actor given a GPU that torch cannot use, which fails the run loudly
instead of running on the CPU. The end-to-end runs start their own embedded Ray that offers a GPU
(`ray.num_gpus=1`), in a subprocess, apart from the test session's Ray."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import pytest
import torch

from vidbatch.config import ConfigError
from vidbatch.core.devices import PoolRequest, pick_device, pool_request
from vidbatch.core.faults import DeviceUnavailable, is_device_fault, is_systemic
from vidbatch.job import load_config

needs_no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks what happens when torch cannot use a GPU")


@pytest.mark.parametrize(
    ("device", "num_gpus", "num_actors", "cluster_gpus", "want"),
    [
        # an autoscaling cluster that starts at 0 GPUs: device cuda still asks for one GPU per actor
        ("cuda", None, None, 0, PoolRequest("cuda", 1.0, 1, 1)),
        ("cuda", None, 4, 0, PoolRequest("cuda", 1.0, 1, 4)),
        ("cuda", 0.5, None, 2, PoolRequest("cuda", 0.5, 1, 4)),
        # auto: GPUs when the cluster has them or its node types can add them (cluster_gpus counts both)
        ("auto", None, None, 0, PoolRequest("cpu", 0.0, 1, 1)),
        ("auto", None, None, 4, PoolRequest("cuda", 1.0, 1, 4)),
        ("auto", 1.0, None, 0, PoolRequest("cuda", 1.0, 1, 1)),
        ("auto", 0.0, None, 4, PoolRequest("cpu", 0.0, 1, 1)),
        ("cpu", None, 2, 4, PoolRequest("cpu", 0.0, 2, 2)),
    ],
)
def test_gpu_requests_come_from_the_config(device, num_gpus, num_actors, cluster_gpus, want):
    assert pool_request(device, num_gpus, num_actors, cluster_gpus) == want


def test_zero_gpu_pools_on_a_gpu_cluster_see_no_gpu():
    from vidbatch.pipeline import ACTOR_RESTARTS, _pool_args

    cpu = _pool_args(PoolRequest("cpu", 0.0, 1, 1), 1.0, cluster_gpus=2)
    assert cpu["runtime_env"] == {"env_vars": {"CUDA_VISIBLE_DEVICES": ""}} and cpu["num_gpus"] == 0
    gpu = _pool_args(PoolRequest("cuda", 1.0, 1, 2), 1.0, cluster_gpus=2)
    assert "runtime_env" not in gpu and gpu["num_gpus"] == 1.0
    assert (gpu["compute"].min_size, gpu["compute"].max_size) == (1, 2)
    assert {k: gpu[k] for k in ACTOR_RESTARTS} == ACTOR_RESTARTS and ACTOR_RESTARTS["max_restarts"] > 0


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["inference.device=cpu", "inference.num_gpus=1"], "device cpu with num_gpus=1 would hold GPUs"),
        (["inference.device=cuda", "inference.num_gpus=0"], "device cuda needs num_gpus above 0"),
        (["shots.device=cpu", "shots.num_gpus=0.5"], r"shots: .*device cpu with num_gpus=0.5"),
    ],
)
def test_device_and_gpu_settings_must_agree(sets, message):
    with pytest.raises(ConfigError, match=message):
        load_config(sets=sets)


@pytest.fixture
def cluster(monkeypatch):
    """A fake cluster for the capacity check: (cpus, gpus now, gpus its autoscaler's node types add up to)."""
    from vidbatch import pipeline

    def set_cluster(cpus: float, gpus: float, max_gpus: float | None = None, address: str | None = None):
        monkeypatch.setattr(pipeline.ray, "cluster_resources", lambda: {"CPU": cpus, "GPU": gpus})
        monkeypatch.setattr(
            pipeline.ray._private.state.state, "get_max_resources_from_cluster_config",
            lambda: None if max_gpus is None else {"CPU": 64, "GPU": max_gpus},
        )
        if address:
            monkeypatch.setenv("RAY_ADDRESS", address)
        else:
            monkeypatch.delenv("RAY_ADDRESS", raising=False)
        return pipeline._check_capacity

    return set_cluster


def test_capacity_counts_the_gpus_actually_requested(cluster):
    check = cluster(cpus=8, gpus=0)
    # device cuda with num_gpus unset asks for 1 GPU per actor, not 0
    with pytest.raises(ConfigError, match=r"inference asks for GPUs \(1 actor x num_gpus=1, device=cuda\), the cluster has 0"):
        check(load_config(sets=["inference.device=cuda"]))
    with pytest.raises(ConfigError, match=r"shots asks for GPUs"):
        check(load_config(sets=["clips.clip_mode=shots", "shots.device=cuda", "tasks=[]"]))
    # the content detector runs in the decode tasks: shots.device=cuda asks for nothing
    check(load_config(sets=["clips.clip_mode=shots", "shots.detector=content", "shots.device=cuda", "tasks=[]"]))
    check(load_config())  # auto on a cluster without GPUs: CPU actors


def test_capacity_counts_gpus_the_autoscaler_can_add(cluster):
    check = cluster(cpus=8, gpus=0, max_gpus=4, address="ray://head:10001")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check(load_config(sets=["inference.device=cuda", "inference.num_actors=4"]))
    check = cluster(cpus=8, gpus=0, max_gpus=None, address="ray://head:10001")
    with pytest.warns(UserWarning, match="waiting for an autoscaler"):
        check(load_config(sets=["inference.device=cuda"]))


def test_more_gpu_actors_than_gpus_grow_from_one(cluster):
    """A GPU pool starts with one actor and grows to num_actors as GPUs come: it never waits for all of them."""
    check = cluster(cpus=8, gpus=1)
    check(load_config(sets=["inference.device=cuda", "inference.num_actors=3"]))
    with pytest.raises(ConfigError, match=r"inference\.num_actors x inference\.num_cpus \(3 x 1\)"):
        cluster(cpus=3, gpus=1)(load_config(sets=["inference.device=cpu", "inference.num_actors=3"]))


@needs_no_cuda
def test_a_granted_gpu_that_torch_cannot_use_fails_naming_why(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    for device in ("auto", "cuda"):
        with pytest.raises(DeviceUnavailable) as raised:
            pick_device(device)
        message = str(raised.value)
        assert f"built for CUDA {torch.version.cuda}" in message and "driver: " in message
        assert "CUDA_VISIBLE_DEVICES='0'" in message
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert pick_device("auto").type == "cpu" and pick_device("cpu").type == "cpu"
    with pytest.raises(DeviceUnavailable):
        pick_device("cuda")


def test_cuda_errors_are_device_faults():
    assert is_device_fault(torch.AcceleratorError("CUDA error: an illegal memory access was encountered"))
    assert is_device_fault(RuntimeError("The following operation failed in the TorchScript interpreter.\n"
                                        "RuntimeError: CUDA error: device-side assert triggered"))
    assert not is_device_fault(RuntimeError("shape mismatch")) and not is_systemic(ValueError("bad frame"))


def vidbatch_run(args: list[str], ray_tmp: str, timeout: int = 420) -> subprocess.CompletedProcess:
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_TMPDIR": ray_tmp}
    env.pop("RAY_ADDRESS", None)
    return subprocess.run([sys.executable, "-m", "vidbatch", "run", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.fixture
def ray_tmp():
    path = tempfile.mkdtemp(prefix="vbray", dir="/tmp")  # short: Ray's socket paths live under it
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.e2e
@needs_no_cuda
@pytest.mark.parametrize("stage", ["inference", "shots"])
def test_a_gpu_that_cannot_be_used_fails_the_run(stage, video_dir: Path, mobilenet_weights: str, tmp_path: Path, ray_tmp):
    """A local Ray node that offers one GPU grants it to the actor (device auto); torch cannot use it, so the run
    exits 1 with the reason instead of running on the CPU and exiting 0."""
    settings = {
        "inference": ["tasks.0.weights_path=" + mobilenet_weights],
        "shots": ["clips.clip_mode=shots", "tasks=[]"],
    }[stage]
    out = tmp_path / "out"
    args = [str(video_dir / "a.mp4"), "-o", str(out), "--show", "0"]
    for s in ["ray.num_gpus=1", "ray.num_cpus=2", "ray.progress_bars=false", *settings]:
        args += ["--set", s]
    proc = vidbatch_run(args, ray_tmp)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output
    assert "torch cannot use it" in output and f"built for CUDA {torch.version.cuda}" in output, output
    assert "CUDA_VISIBLE_DEVICES='0'" in output and "driver: " in output
    (manifest,) = (out / "runs").glob("*.json")
    assert json.loads(manifest.read_text())["status"] == "crashed"


class CudaFault(torch.nn.Module):
    """A segmenter whose forward fails as a broken GPU does (a sticky CUDA error), on any input."""

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        raise RuntimeError("CUDA error: an illegal memory access was encountered (injected)")


@pytest.mark.e2e
def test_a_cuda_fault_restarts_the_actor_then_ends_the_run(video_dir: Path, tmp_path: Path, ray_tmp):
    """The actor's process exits on a CUDA error, so Ray restarts it and retries the batch; a fault that persists
    uses up ACTOR_RESTARTS and the run exits 1 instead of writing `infer` error rows."""
    model = tmp_path / "fault.pt"
    torch.jit.save(torch.jit.script(CudaFault()), str(model))
    out = tmp_path / "out"
    args = [str(video_dir / "a.mp4"), "-o", str(out), "--show", "0", "--set", "ray.num_cpus=2",
            "--set", "ray.progress_bars=false",
            "--set", f"tasks=[{{task: segment, model: torchscript, weights: null, weights_path: {model}}}]"]
    proc = vidbatch_run(args, ray_tmp)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert not list(out.glob("errors/**/*.parquet"))  # no error rows were written: the run crashed, resumable
    died = {p for p in Path(ray_tmp).glob("ray/session_*/logs/worker-*.err") if "(injected)" in p.read_text()}
    assert len(died) >= 2, died  # the first process, then at least one restarted one


@pytest.mark.parametrize(
    ("cpus", "decode_cpus", "want"),
    [(2, 1.0, (2, 0.5, 1)), (1, 1.0, (1, 0.0, 1)), (16, 1.0, (16, 0.6875, 1)), (8, 2.0, (8, 0.5, 1)), (3.5, 1.0, (3, 0.6666, 1))],
)
def test_cpu_pool_is_one_single_threaded_actor_per_core_beside_the_decode_share(cpus, decode_cpus, want):
    from vidbatch.core.devices import cpu_pool_size

    size = cpu_pool_size(cpus, decode_cpus)
    assert (size.actors, size.num_cpus, size.threads) == want
    # every actor starts at once and at least one decode task still fits beside them
    assert size.actors * size.num_cpus + decode_cpus <= max(1, int(cpus)) + 1e-6


def test_cpu_pool_sizing_honours_explicit_settings():
    from vidbatch.pipeline import _sized_inference

    auto = _sized_inference(load_config(), cluster_cpus=2, cluster_gpus=0)
    assert (auto.num_actors, auto.num_cpus, auto.threads) == (2, 0.5, 1)
    assert _sized_inference(load_config(sets=["inference.threads=2"]), 2, 0).threads == 2
    for sets in (["inference.num_actors=1"], ["inference.num_cpus=1"], ["inference.device=cuda"]):
        cfg = load_config(sets=sets)
        assert _sized_inference(cfg, 2, 0) == cfg.inference, sets
    assert _sized_inference(load_config(), 2, cluster_gpus=1) == load_config().inference  # auto on a GPU cluster


def test_the_sized_cpu_pool_passes_the_capacity_check(cluster):
    for cpus in (1, 2, 16):
        cluster(cpus=cpus, gpus=0)(load_config())
