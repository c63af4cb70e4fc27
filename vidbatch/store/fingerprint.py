"""The pipeline fingerprint: what must be equal for two runs' clip rows to be interchangeable.

It names output partitions (`pipeline=<fp>`), decides what a `--backfill` reprocesses, and keys resumable runs.
Models enter with their weights (name, or the checkpoint file's size and version), clips with every setting
that changes which frames are sampled or how they are prepared.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from typing import Any

from fsspec.core import url_to_fs

from vidbatch.config import JobConfig
from vidbatch.infer.tasks import frame_spec_for

OUTPUT_FORMAT = 2  # bump when the rows written for the same settings change meaning


def _digest(obj: Any, n: int) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:n]


def _checkpoint_version(url: str, storage_options: dict[str, Any]) -> dict[str, Any]:
    fs, path = url_to_fs(url, **storage_options)
    info = fs.info(path)
    return {"size": info.get("size"), "version": info.get("ETag") or info.get("etag") or info.get("mtime")}


def pipeline_identity(config: JobConfig) -> dict[str, Any]:
    tasks = []
    for t in config.tasks:
        entry = t.model_dump()
        if t.weights_path:
            entry["checkpoint"] = _checkpoint_version(t.weights_path, config.storage_options)
        tasks.append(entry)
    identity = {
        "format": OUTPUT_FORMAT,
        "clips": config.clips.model_dump(),
        "sampling": config.sampling.model_dump(),
        "frames": asdict(frame_spec_for(config.tasks)),
        "tasks": tasks,
        "thumbnail_width": config.out.thumbnail_width if config.out.thumbnails else None,
    }
    if config.tasks and config.inference.precision != "fp32":
        # autocast changes the scores (and so the job key): fp32, what outputs were always made with, adds nothing,
        # so their fingerprints stay what they were
        identity["precision"] = config.inference.precision
    if config.out.frame_embeddings:  # only when on, so that jobs without frames keep their fingerprints
        identity["frame_embeddings"] = True
    return identity


def pipeline_fingerprint(identity: dict[str, Any]) -> str:
    return _digest(identity, 12)


def job_key(config: JobConfig, pipeline: str) -> str:
    """Two invocations with the same key are the same job: the second resumes the first if it did not commit."""
    return _digest({"inputs": config.inputs, "pipeline": pipeline, "incremental": config.incremental.model_dump()}, 16)
