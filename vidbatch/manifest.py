"""The run manifest `runs/<run_id>.json`: what ran, with which versions, what came out, how fast."""
from __future__ import annotations

import json
import platform
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, UTC
from importlib import metadata
from typing import Any

from fsspec.core import url_to_fs

EXIT_OK, EXIT_CRASH, EXIT_USAGE, EXIT_PARTIAL = 0, 1, 2, 3
PACKAGES = ("vidbatch", "ray", "av", "torch", "torchvision", "pyarrow", "fsspec", "numpy")


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


@dataclass
class RunCounts:
    inputs: int = 0  # = ok + failed
    ok: int = 0
    failed: int = 0
    clips: int = 0
    errors: int = 0
    sampled_frames: int = 0
    source_frames: int = 0  # frames in the videos that were processed
    source_seconds: float = 0.0
    ignored_files: int = 0  # files under listed directories/globs without a video suffix


@dataclass
class RunSummary:
    run_id: str
    output: str
    status: str  # complete | partial | failed | crashed
    exit_code: int
    counts: RunCounts
    started_at: str
    wall_s: float
    pipeline_s: float  # after Ray start-up: listing, probing, decoding, inference, writing
    config: dict[str, Any]
    versions: dict[str, str] = field(default_factory=package_versions)
    files: dict[str, list[str]] = field(default_factory=dict)
    error: str | None = None  # why a crashed run stopped

    @property
    def throughput(self) -> dict[str, float]:
        s = max(self.pipeline_s, 1e-9)
        c = self.counts
        return {
            "clips_per_s": c.clips / s,
            "sampled_frames_per_s": c.sampled_frames / s,
            "source_frames_per_s": c.source_frames / s,
            "source_seconds_per_s": c.source_seconds / s,
        }

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "throughput": self.throughput}

    def write(self, storage_options: dict[str, Any] | None = None) -> str:
        fs, root = url_to_fs(self.output, **(storage_options or {}))
        fs.makedirs(f"{root}/runs", exist_ok=True)
        path = f"{root}/runs/{self.run_id}.json"
        with fs.open(path, "w") as f:
            json.dump(self.to_dict(), f, indent=2, default=str)
        return path


def status_for(counts: RunCounts) -> tuple[str, int]:
    if counts.failed == 0:
        return "complete", EXIT_OK
    if counts.ok == 0:
        return "failed", EXIT_PARTIAL
    return "partial", EXIT_PARTIAL
