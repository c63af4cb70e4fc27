"""Where a model runs, and how tensors get there and back: one rule for inference actors and shot detectors.

A process that was given a GPU runs on it or fails at start-up saying why; it never falls back to the CPU while
the GPU it holds sits idle. What an actor pool asks Ray for is decided once, on the driver (`pool_request`).

torch is imported inside the functions that use it: the driver imports this module for `pool_request` and never
runs a model, and importing torch there costs seconds and hundreds of MB.
"""
from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from vidbatch.core.faults import DeviceUnavailable

if TYPE_CHECKING:
    import numpy as np
    import torch

# oldest NVIDIA driver each CUDA major release runs on (NVIDIA's CUDA toolkit release notes, minor-version compatibility)
MIN_DRIVER = {"11": "450.80.02", "12": "525.60.13", "13": "580.65.06"}
_DRIVER_FILE = Path("/proc/driver/nvidia/version")


def driver_version() -> str:
    """The kernel driver's version, from the file the driver writes or from nvidia-smi; or why neither told it."""
    if _DRIVER_FILE.is_file():
        first = _DRIVER_FILE.read_text().splitlines()[0]  # "NVRM version: NVIDIA UNIX x86_64 Kernel Module  580.65.06 ..."
        words = first.split("Kernel Module")[-1].split()
        return words[0] if words else first
    if not shutil.which("nvidia-smi"):
        return f"none found (no {_DRIVER_FILE}, no nvidia-smi on PATH)"
    result = subprocess.run(
        ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True, text=True, timeout=30
    )
    if result.returncode != 0 or not result.stdout.strip():
        return f"unknown (nvidia-smi failed: {(result.stderr or result.stdout).strip()[:200]})"
    return result.stdout.strip().splitlines()[0]


def cuda_report(cause: BaseException) -> str:
    """What to check when torch cannot use a GPU: the CUDA build, the driver it needs and the one found, and which
    devices the process was given."""
    import torch

    cuda = torch.version.cuda
    needs = MIN_DRIVER.get((cuda or "").split(".")[0])
    return (
        f"this process was given a GPU but torch cannot use it: {type(cause).__name__}: {cause} | "
        f"torch {torch.__version__} is built for CUDA {cuda or 'none (a CPU build)'}"
        f"{f', which needs NVIDIA driver >= {needs}' if needs else ''} | driver: {driver_version()} | "
        f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r}"
    )


def granted_gpu() -> bool:
    """Ray (or the user) named GPUs for this process: it is meant to run on one."""
    return os.environ.get("CUDA_VISIBLE_DEVICES", "").strip() not in ("", "-1")


def cuda_device() -> torch.device:
    """The process's first visible GPU, after checking torch can use it (CUDA initialises here, not in the first
    forward pass); prints its name."""
    import torch

    try:
        torch.cuda.init()
        name = torch.cuda.get_device_name(0)
    except (RuntimeError, AssertionError) as e:  # AssertionError: a torch built without CUDA
        raise DeviceUnavailable(cuda_report(e)) from e
    # stderr, not logging: Ray shows an actor's stderr in the driver's log (prefixed with actor and pid) and keeps it
    # in the worker's log file, while INFO log records of a worker process go nowhere by default
    print(
        f"vidbatch: running on cuda:0, {name} (torch {torch.__version__}, CUDA {torch.version.cuda}, "
        f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r})", file=sys.stderr, flush=True,
    )
    return torch.device("cuda", 0)


def pick_device(device: Literal["auto", "cpu", "cuda"]) -> torch.device:
    """cuda when asked for, when a GPU was granted, or (auto) when one is usable; else the CPU."""
    import torch

    if device == "cpu" or (device == "auto" and not granted_gpu() and not torch.cuda.is_available()):
        return torch.device("cpu")
    return cuda_device()


def to_device(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """Pinned host memory lets the copy to a GPU overlap compute; on the CPU the array is used in place."""
    import torch

    tensor = torch.from_numpy(array)
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor


def to_host(tensors: list[torch.Tensor]) -> list[np.ndarray]:
    """Device results back as numpy, one copy per dtype instead of one per tensor: each copy from a GPU waits for
    the GPU to finish, so per-clip or per-frame copies would stall it once per item."""
    import torch

    out: list[np.ndarray | None] = [None] * len(tensors)
    by_dtype: dict[torch.dtype, list[int]] = {}
    for i, t in enumerate(tensors):
        by_dtype.setdefault(t.dtype, []).append(i)
    for indices in by_dtype.values():
        flat = torch.cat([tensors[i].reshape(-1) for i in indices]).cpu().numpy()
        offset = 0
        for i in indices:
            n = tensors[i].numel()
            out[i] = flat[offset : offset + n].reshape(tuple(tensors[i].shape))
            offset += n
    return out  # type: ignore[return-value]


@dataclass(frozen=True)
class PoolRequest:
    """What an actor pool asks Ray for. A GPU pool grows from one actor as Ray Data needs more; a CPU pool has a
    fixed size, as its actors share the CPUs with the decode tasks."""

    device: Literal["cpu", "cuda"]
    num_gpus: float  # per actor
    min_size: int
    max_size: int


def pool_request(
    device: Literal["auto", "cpu", "cuda"], num_gpus: float | None, num_actors: int | None, cluster_gpus: float
) -> PoolRequest:
    """From the config, not from the GPUs the cluster has at this moment: an autoscaling cluster starts with none.

    cluster_gpus: the most GPUs the cluster can have (its autoscaler's node types, else the GPUs it has now).
    `cuda` asks for `num_gpus` (default 1) per actor; `auto` does too when num_gpus is set above 0 or, unset, when
    cluster_gpus >= 1. The GPU pool's size is 1 to num_actors, by default as many actors as cluster_gpus holds.
    """
    wants_gpu = device == "cuda" or (device == "auto" and (num_gpus > 0 if num_gpus is not None else cluster_gpus >= 1))
    if not wants_gpu:
        size = num_actors or 1
        return PoolRequest("cpu", 0.0, size, size)
    per_actor = num_gpus or 1.0
    most = num_actors or max(1, int(cluster_gpus // per_actor))
    return PoolRequest("cuda", per_actor, 1, most)


# Share of a CPU classify job's work that is decoding (decode tasks' time against the inference actors' time:
# 5.3-8.8 s against 13.5-17.7 s for mobilenet_v2 at 8 frames per 2 s clip, benchmarks/README.md, issue 12).
DECODE_CPU_SHARE = 0.3


@dataclass(frozen=True)
class CpuPoolSize:
    """A CPU inference pool sized to the cluster: actors, the Ray CPUs each reserves, torch threads each."""

    actors: int
    num_cpus: float
    threads: int


def cpu_pool_size(cluster_cpus: float, decode_cpus: float) -> CpuPoolSize:
    """One single-threaded actor per CPU, reserving together what the decode tasks' share leaves.

    Single-threaded actors use a core better than torch threads do (MobileNetV2 ran 1.6x, not 2x, faster on two
    threads), and actors that reserve only part of a CPU all start at once instead of waiting for the decode tasks
    to finish: decoding runs beside them on what they do not reserve, at least one decode task at a time.
    """
    cores = max(1, int(cluster_cpus))
    decode = min(float(cores), decode_cpus * max(1, math.ceil(cores * DECODE_CPU_SHARE / decode_cpus)))
    share = math.floor(max(0.0, cores - decode) / cores * 1e4) / 1e4  # rounded down: the decode task must still fit
    return CpuPoolSize(actors=cores, num_cpus=share, threads=1)
