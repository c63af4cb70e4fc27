"""The run manifest `runs/<run_id>.json`: what ran, with which versions, what came out, how fast."""
from __future__ import annotations

import platform
import uuid
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from typing import Any

import pyarrow as pa

from vidbatch.config import JobConfig
from vidbatch.core.storage import OutputStore

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
    """Reconciles: inputs = listed + unreadable_inputs;
    listed = new + changed + backfill + skipped + failed + quarantined."""

    inputs: int = 0
    listed: int = 0  # videos found by listing the inputs
    unreadable_inputs: int = 0  # inputs that could not be listed (missing path, empty directory, store down)
    new: int = 0  # processed ok, first time seen
    changed: int = 0  # processed ok again: changed file, retry, or a full (non-incremental) rerun
    skipped: int = 0  # unchanged since an ok run (incremental runs)
    failed: int = 0  # processed this run and failed (see errors/)
    quarantined: int = 0  # skipped: failed incremental.quarantine_after runs in a row, unchanged since
    deleted: int = 0  # in the ledger and in scope of the inputs, no longer listed
    ok: int = 0  # new + changed
    clips: int = 0
    errors: int = 0
    sampled_frames: int = 0
    source_frames: int = 0  # frames in the videos that were processed
    source_seconds: float = 0.0
    ignored_files: int = 0  # files under listed directories/globs without a video suffix
    resumed_units: int = 0  # work units a resumed run found finished by its killed attempt
    backfill: int = 0  # processed ok again because their pipeline fingerprint changed (--backfill)
    older_pipeline: int = 0  # skipped (incremental) but their clips come from another pipeline: --backfill redoes them


@dataclass
class RunSummary:
    run_id: str
    output: str
    status: str  # complete | partial | failed | crashed
    exit_code: int
    counts: RunCounts
    started_at: str
    wall_s: float
    pipeline_s: float  # after Ray start-up: probing, decoding, inference, writing (listing runs before Ray starts)
    config: dict[str, Any]
    versions: dict[str, str] = field(default_factory=package_versions)
    error: str | None = None  # why a crashed run stopped
    dt: str = ""  # partition date of the run's files (UTC day it started)
    pipeline: str = ""  # pipeline fingerprint (vidbatch.store.fingerprint)
    pipeline_identity: dict[str, Any] = field(default_factory=dict)
    resumed: bool = False  # finished the staged work of a killed attempt with the same run_id
    job_key: str = ""  # inputs, pipeline and mode: runs with the same key resume each other and share a lease
    seq: int = 0  # the job's run sequence number: with the job key, the app transaction of every table commit
    table_versions: dict[str, int] = field(default_factory=dict)  # every output table's version once committed
    committed_at: str | None = None  # when the last table commit landed; readers use committed runs only
    # seconds per driver phase (list, ray start-up, probe, shots, stream = decode + inference overlapping) and
    # Ray Data's summed task time per operator (`ray_task_s:MapBatches(DecodeStage)`, ...); see vidbatch.progress
    stage_s: dict[str, float] = field(default_factory=dict)
    # per Ray node id: where this attempt's clip stream ran (NodeTally): decode tasks and the clips they decoded,
    # inference batches and the clips in them, and the node's address
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)

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

    def write(self, store: OutputStore) -> str:
        return store.write_json(f"runs/{self.run_id}.json", self.to_dict())


# Columns the clip stream's result rows carry to the driver only (never written): the Ray node and task that
# decoded each clip, and the node and batch that ran its inference (empty when no inference ran).
DECODE_NODE, DECODE_TASK, INFER_NODE, INFER_BATCH = "decode_node", "decode_task", "infer_node", "infer_batch"
PLACEMENT_COLUMNS = (DECODE_NODE, DECODE_TASK, INFER_NODE, INFER_BATCH)


class NodeTally:
    """Where the work ran, from the placement columns of the result rows as they arrive (rows Ray computed again
    after a lost worker count where they ran): per node, distinct decode tasks and inference batches, and clips."""

    def __init__(self) -> None:
        self._work: dict[str, dict[str, set[str]]] = defaultdict(lambda: {"decode": set(), "infer": set()})
        self._clips: dict[str, dict[str, int]] = defaultdict(lambda: {"decode": 0, "infer": 0})

    def add(self, table: pa.Table) -> None:
        for kind, node, unit in (("decode", DECODE_NODE, DECODE_TASK), ("infer", INFER_NODE, INFER_BATCH)):
            pairs = table.select([node, unit]).group_by([node, unit]).aggregate([([], "count_all")])
            for n, u, c in zip(*(pairs[x].to_pylist() for x in (node, unit, "count_all"))):
                if n:
                    self._work[n][kind].add(u)
                    self._clips[n][kind] += c

    def to_dict(self, addresses: dict[str, str] | None = None) -> dict[str, dict[str, Any]]:
        return {
            node: {
                "address": (addresses or {}).get(node, ""),
                "decode_tasks": len(work["decode"]), "decoded_clips": self._clips[node]["decode"],
                "inference_batches": len(work["infer"]), "inferred_clips": self._clips[node]["infer"],
            }
            for node, work in sorted(self._work.items())
        }


def status_for(counts: RunCounts, partial_ok: bool = False) -> tuple[str, int]:
    """complete: nothing failed (including a nightly run with nothing new); failed: nothing succeeded.

    partial_ok: a finished run whose failures are inputs exits 0 (the status still says partial or failed), unless
    no input could be listed at all (a wrong or unreachable archive is not a night with a few bad files)."""
    failures = counts.failed + counts.unreadable_inputs
    if failures == 0:
        return "complete", EXIT_OK
    status = "failed" if counts.ok == 0 else "partial"
    nothing_listed = counts.listed == 0 and counts.unreadable_inputs > 0
    return status, EXIT_OK if partial_ok and not nothing_listed else EXIT_PARTIAL


SECRET_HINTS = ("secret", "token", "password", "key", "credential", "session")


def redact(value: Any) -> Any:
    """Secret-looking keys at any depth (e.g. client_kwargs.aws_secret_access_key) are replaced by ***."""
    if isinstance(value, dict):
        return {k: "***" if any(h in str(k).lower() for h in SECRET_HINTS) else redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


def recorded_config(config: JobConfig) -> dict[str, Any]:
    """The config as recorded in the manifest: storage credentials never leave the process."""
    data = config.model_dump(mode="json")
    data["storage_options"] = redact(data["storage_options"])
    return data
