"""Wire the Ray-free stages into Ray Data: the only module that imports ray.

probe+plan (tasks) -> decode work units (tasks, streaming generator) -> inference (actor pool)
-> the driver, which writes the small per-clip results. Ray Data's streaming executor bounds memory:
decoded frames exist only between the decode tasks and the actors.
"""
from __future__ import annotations

import functools
import json
import logging
import os
import time
from collections import Counter
from datetime import datetime, timezone
from typing import Any

import pyarrow as pa
import ray
import ray.data
from ray.data import ActorPoolStrategy

from vidbatch.batches import DecodeStage, max_samples_per_clip, result_table
from vidbatch.config import JobConfig, RayConfig
from vidbatch.errors import ErrorRow
from vidbatch.inference import ClipInferenceActor, frame_spec_for, task_output_fields
from vidbatch.listing import list_videos
from vidbatch.manifest import RunCounts, RunSummary, new_run_id, status_for
from vidbatch.prepare import PrepareStage, PreparedVideo
from vidbatch.schema import ERRORS, VIDEOS, clips_schema, result_schema
from vidbatch.writer import TableWriter

log = logging.getLogger("vidbatch")
SECRET_HINTS = ("secret", "token", "password", "key", "credential")


def ensure_ray(cfg: RayConfig) -> None:
    """Join RAY_ADDRESS/--address when given, else start an embedded local Ray (once per process)."""
    if ray.is_initialized():
        return
    address = cfg.address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=True)
    else:
        ray.init(num_cpus=cfg.num_cpus, include_dashboard=False, log_to_driver=False)


def _redacted(config: JobConfig) -> dict[str, Any]:
    """The config as recorded in the manifest: storage credentials never leave the process."""
    data = config.model_dump(mode="json")
    data["storage_options"] = {
        k: ("***" if any(h in k.lower() for h in SECRET_HINTS) else v) for k, v in data["storage_options"].items()
    }
    return data


def _error_table(rows: list[ErrorRow], run_id: str) -> pa.Table:
    records = [
        {"video_id": e.video_id, "video_uri": e.uri, "stage": e.stage, "error_type": e.error_type, "message": e.message,
         "clip_id": e.clip_id, "start_s": e.start_s, "end_s": e.end_s, "run_id": run_id}
        for e in rows
    ]
    return pa.Table.from_pylist(records, schema=ERRORS)


def _result_errors(table: pa.Table) -> list[ErrorRow]:
    failed = table.filter(pa.compute.is_valid(table["error_stage"]))
    return [
        ErrorRow(uri=r["video_uri"], stage=r["error_stage"], error_type=r["error_type"], message=r["error_message"],
                 video_id=r["video_id"], clip_id=r["clip_id"], start_s=r["start_s"], end_s=r["end_s"])
        for r in failed.to_pylist()
    ]


def _videos_table(prepared: list[PreparedVideo], clip_counts: Counter, failed_ids: set[str], run_id: str) -> pa.Table:
    rows = []
    for p in prepared:
        vid = p.source.video_id
        info = p.info.to_dict() if p.info else {}
        rows.append(
            {
                "video_id": vid, "video_uri": p.source.uri, "fingerprint": p.source.fingerprint,
                "size_bytes": p.source.size, "version": p.source.version,
                "status": "failed" if vid in failed_ids else "ok", "clip_count": clip_counts.get(vid, 0),
                **{k: info.get(k) for k in VIDEOS.names if k in info}, "run_id": run_id,
            }
        )
    return pa.Table.from_pylist(rows, schema=VIDEOS)


def _clip_stream(config: JobConfig, units: list[str], schema: pa.Schema) -> ray.data.Dataset:
    """Decode tasks feeding an inference actor pool (or, with no tasks, a frame-dropping map)."""
    k = max_samples_per_clip(config.clips, config.sampling)
    spec = frame_spec_for(config.tasks)
    # several blocks per CPU balance the load; one block per unit would flood the scheduler on huge archives
    blocks = min(len(units), max(200, 8 * int(ray.cluster_resources().get("CPU", 1))))
    ds = ray.data.from_items([{"unit_json": u} for u in units], override_num_blocks=blocks)
    ds = ds.map_batches(
        DecodeStage(spec, config.decode, k, config.storage_options or None),
        batch_size=1,
        num_cpus=config.decode.num_cpus,
        # distinct remote args keep decode in its own task pool: fused into the actors it would run
        # serially with inference, on the GPU nodes of a cluster
        memory=config.decode.memory_mb * 2**20,
    )
    if not config.tasks:
        return ds.map_batches(functools.partial(result_table, schema=schema, task_columns={}), batch_size=64)
    inf = config.inference
    gpus = inf.num_gpus
    if gpus is None:
        gpus = 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 and inf.device != "cpu" else 0.0
    return ds.map_batches(
        ClipInferenceActor,
        fn_constructor_kwargs={"tasks": config.tasks, "cfg": inf, "storage_options": config.storage_options or None},
        batch_size=max(1, inf.batch_size // k),
        compute=ActorPoolStrategy(size=inf.num_actors),
        num_cpus=inf.num_cpus,
        num_gpus=gpus,
        batch_format="numpy",
    )


def run(config: JobConfig) -> RunSummary:
    """Run the job once over config.inputs; returns the summary also written to runs/<run_id>.json."""
    if not config.inputs:
        raise ValueError("inputs: at least one video, directory, glob or manifest is required")
    if not config.output:
        raise ValueError("output: an output directory is required")
    started = time.time()
    started_at = datetime.now(timezone.utc).isoformat()
    run_id = config.run_id or new_run_id()
    task_fields = task_output_fields(config.tasks)
    so = config.storage_options or None

    ensure_ray(config.ray)
    ray.data.DataContext.get_current().enable_progress_bars = config.ray.progress_bars
    t_pipeline = time.time()

    sources, errors, ignored = list_videos(config.inputs, config.input, so)
    prepared: list[PreparedVideo] = []
    if sources:
        prepare = PrepareStage(config.clips, config.sampling, config.decode.unit_seconds, so)
        rows = (
            ray.data.from_items([{"source_json": json.dumps(s.to_dict())} for s in sources],
                                override_num_blocks=min(len(sources), 256))
            .map(prepare)
            .take_all()
        )
        prepared = [PreparedVideo.from_json(r["prepared_json"]) for r in rows]
    errors += [p.error for p in prepared if p.error]

    out = config.output.rstrip("/")
    clip_writer = TableWriter(f"{out}/clips", clips_schema(task_fields), run_id, config.out.rows_per_file, so)
    clip_counts: Counter = Counter()
    sampled = 0
    units = [json.dumps(u.to_dict()) for p in prepared for u in p.units]
    if units:
        for table in _clip_stream(config, units, result_schema(task_fields)).iter_batches(
            batch_format="pyarrow", batch_size=None
        ):
            good = table.filter(pa.compute.is_null(table["error_stage"]))
            clip_writer.add(good.append_column("run_id", pa.array([run_id] * good.num_rows, pa.string())))
            clip_counts.update(good["video_id"].to_pylist())
            sampled += sum(len(t) for t in good["frame_times_s"].to_pylist())
            errors += _result_errors(table)

    failed_ids = {e.video_id for e in errors}
    files = {"clips": clip_writer.close()}
    videos = _videos_table(prepared, clip_counts, failed_ids, run_id)
    for name, table, schema in [("videos", videos, VIDEOS), ("errors", _error_table(errors, run_id), ERRORS)]:
        writer = TableWriter(f"{out}/{name}", schema, run_id, config.out.rows_per_file, so)
        writer.add(table)
        files[name] = writer.close()

    listed_ids = {p.source.video_id for p in prepared} | failed_ids
    ok_videos = [p for p in prepared if p.source.video_id not in failed_ids and p.info]
    counts = RunCounts(
        inputs=len(listed_ids),
        ok=len(listed_ids - failed_ids),
        failed=len(failed_ids),
        clips=sum(clip_counts.values()),
        errors=len(errors),
        sampled_frames=sampled,
        source_frames=sum(p.info.frame_count for p in ok_videos),
        source_seconds=sum(p.info.duration_s for p in ok_videos),
        ignored_files=ignored,
    )
    status, exit_code = status_for(counts)
    summary = RunSummary(
        run_id=run_id, output=config.output, status=status, exit_code=exit_code, counts=counts,
        started_at=started_at, wall_s=time.time() - started, pipeline_s=time.time() - t_pipeline,
        config=_redacted(config), files=files,
    )
    summary.write(so)
    return summary
