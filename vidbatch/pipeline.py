"""Wire the Ray-free stages into Ray Data: the only module that imports ray.

probe+plan (tasks) -> decode work units (tasks, streaming generator) -> inference (actor pool)
-> the driver, which writes the small per-clip results. Ray Data's streaming executor bounds memory:
decoded frames exist only between the decode tasks and the actors.
"""
from __future__ import annotations

import functools
import json
import os
import time
import warnings
from collections import Counter
from datetime import datetime, UTC
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import ray
import ray.data
from ray.data import ActorPoolStrategy

from vidbatch.batches import DecodeStage, max_samples_per_clip, result_table
from vidbatch.config import ConfigError, JobConfig, RayConfig
from vidbatch.errors import ErrorRow, errors_table, merge_per_video
from vidbatch.inference import FRAMES_PER_ACTOR_CALL, ClipInferenceActor, frame_spec_for, task_output_fields
from vidbatch.listing import VideoSource, list_videos
from vidbatch.manifest import EXIT_CRASH, RunCounts, RunSummary, new_run_id, status_for
from vidbatch.prepare import PrepareStage, PreparedVideo
from vidbatch.schema import ERRORS, SHOTS, VIDEOS, clips_schema, result_schema
from vidbatch.shots import get_detector
from vidbatch.shots.planning import replan_with_shots
from vidbatch.shots.stages import ShotDecodeStage, ShotModelActor
from vidbatch.writer import TableWriter

SECRET_HINTS = ("secret", "token", "password", "key", "credential", "session")


def _cluster_address(cfg: RayConfig) -> str | None:
    return cfg.address or os.environ.get("RAY_ADDRESS")


def ensure_ray(cfg: RayConfig) -> None:
    """Join RAY_ADDRESS/--address when given, else start an embedded local Ray (once per process)."""
    if ray.is_initialized():
        return
    address = _cluster_address(cfg)
    if address:
        ray.init(address=address, log_to_driver=True)
    else:
        ray.init(num_cpus=cfg.num_cpus, include_dashboard=False, log_to_driver=False)


def _redact(value: Any) -> Any:
    """Secret-looking keys at any depth (e.g. client_kwargs.aws_secret_access_key) are replaced by ***."""
    if isinstance(value, dict):
        return {k: "***" if any(h in str(k).lower() for h in SECRET_HINTS) else _redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(v) for v in value]
    return value


def _recorded_config(config: JobConfig) -> dict[str, Any]:
    """The config as recorded in the manifest: storage credentials never leave the process."""
    data = config.model_dump(mode="json")
    data["storage_options"] = _redact(data["storage_options"])
    return data


def _videos_table(
    prepared: list[PreparedVideo], list_errors: list[ErrorRow], clip_counts: Counter, failed_ids: set[str], run_id: str
) -> pa.Table:
    """One row per input, including inputs that could not even be listed (no metadata, status failed)."""
    rows = [
        {"video_id": e.video_id, "video_uri": e.uri, "status": "failed", "clip_count": 0, "run_id": run_id}
        for e in list_errors
    ]
    for p in prepared:
        vid = p.source.video_id
        info = p.info.to_dict() if p.info else {}
        rows.append(
            {
                "video_id": vid, "video_uri": p.source.uri, "fingerprint": p.source.fingerprint,
                "size_bytes": p.source.size, "version": p.source.version,
                "status": "failed" if vid in failed_ids else "ok", "clip_count": clip_counts.get(vid, 0),
                **{k: info[k] for k in VIDEOS.names if k in info}, "run_id": run_id,
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
    # memory: distinct remote args keep decode in its own task pool; fused into the actors it would run serially
    # with inference, on the GPU nodes of a cluster
    decode_args = {"num_cpus": config.decode.num_cpus, "memory": config.decode.memory_mb * 2**20}
    ds = ds.map_batches(
        DecodeStage(spec, config.decode.strategy, config.decode.threads, k, config.storage_options or None),
        batch_size=1,
        **decode_args,
    )
    if not config.tasks:
        # same remote args: Ray fuses this into the decode tasks, so frames never leave the process that decoded them
        return ds.map_batches(functools.partial(result_table, schema=schema, task_columns={}), batch_size=None, **decode_args)
    inf = config.inference
    gpus = inf.num_gpus
    if gpus is None:
        gpus = 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 and inf.device != "cpu" else 0.0
    return ds.map_batches(
        ClipInferenceActor,
        fn_constructor_kwargs={"tasks": config.tasks, "cfg": inf, "storage_options": config.storage_options or None},
        batch_size=max(1, (inf.batch_size or FRAMES_PER_ACTOR_CALL) // k),
        compute=ActorPoolStrategy(size=inf.num_actors),
        num_cpus=inf.num_cpus,
        num_gpus=gpus,
        batch_format="numpy",
    )


def _check_capacity(config: JobConfig) -> None:
    """Requests the cluster can never grant make Ray Data wait forever (e.g. an actor pool holding every CPU, so no
    decode task can run): refused on an embedded Ray, a warning on a cluster an autoscaler may grow."""
    resources = ray.cluster_resources()
    cpus, gpus = resources.get("CPU", 0.0), resources.get("GPU", 0.0)
    inf, dec = config.inference, config.decode
    problems = []
    if config.tasks:
        need = inf.num_actors * inf.num_cpus + dec.num_cpus
        if need > cpus:
            problems.append(
                f"inference.num_actors x inference.num_cpus ({inf.num_actors} x {inf.num_cpus:g}) plus decode.num_cpus "
                f"({dec.num_cpus:g}) need {need:g} CPUs, but the Ray cluster has {cpus:g}: no decode task could run"
            )
        if (inf.num_gpus or 0) * inf.num_actors > gpus or (inf.device == "cuda" and gpus == 0):
            problems.append(f"inference asks for GPUs (num_gpus={inf.num_gpus}, device={inf.device}), the cluster has {gpus:g}")
    elif dec.num_cpus > cpus:
        problems.append(f"decode.num_cpus ({dec.num_cpus:g}) exceeds the Ray cluster's {cpus:g} CPUs")
    sh = config.shots
    if config.clips.clip_mode == "shots" and get_detector(sh.detector).needs_model and sh.num_actors * sh.num_cpus + dec.num_cpus > cpus:
        problems.append(
            f"shots.num_actors x shots.num_cpus ({sh.num_actors} x {sh.num_cpus:g}) plus decode.num_cpus ({dec.num_cpus:g}) "
            f"need more than the Ray cluster's {cpus:g} CPUs: no shot decode task could run"
        )
    if config.clips.clip_mode == "shots" and ((sh.num_gpus or 0) * sh.num_actors > gpus or (sh.device == "cuda" and gpus == 0)):
        problems.append(f"shots asks for GPUs (num_gpus={sh.num_gpus}, device={sh.device}), the cluster has {gpus:g}")
    if not problems:
        return
    if _cluster_address(config.ray):
        warnings.warn("; ".join(problems) + " (waiting for an autoscaler to add nodes)", stacklevel=2)
    else:
        raise ConfigError("; ".join(problems))


def _prepare(config: JobConfig, sources: list[VideoSource]) -> list[PreparedVideo]:
    """Probe and plan every video in parallel Ray tasks; the plans are small, so they come back to the driver."""
    if not sources:
        return []
    stage = PrepareStage(config.clips, config.sampling, config.decode.unit_seconds, config.storage_options or None)
    items = [{"source_json": json.dumps(s.to_dict())} for s in sources]
    rows = ray.data.from_items(items, override_num_blocks=min(len(items), 256)).map(stage).take_all()
    return [PreparedVideo.from_json(r["prepared_json"]) for r in rows]


def detect_shots(config: JobConfig, prepared: list[PreparedVideo], run_id: str) -> tuple[pa.Table, list[PreparedVideo]]:
    """clip_mode=shots: decode each probed video once at 48x27 (Ray tasks), find its shots (in the same task, or in
    an actor pool for a detector with a model), then re-plan its clips to follow them on the driver.

    Returns the shots/ table and the re-planned videos; a video whose shot stage failed carries the error instead.
    """
    videos = [p for p in prepared if p.info is not None and p.error is None]
    results: list[dict[str, Any]] = []
    if videos:
        sh = config.shots
        items = [{"video_json": json.dumps({"uri": p.source.uri, "video_id": p.source.video_id})} for p in videos]
        decode = ShotDecodeStage(sh, config.decode.threads, config.storage_options or None)
        ds = ray.data.from_items(items, override_num_blocks=min(len(items), 256)).map(
            decode, num_cpus=config.decode.num_cpus, memory=config.decode.memory_mb * 2**20
        )
        if get_detector(sh.detector).needs_model:
            gpus = sh.num_gpus
            if gpus is None:
                gpus = 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 and sh.device != "cpu" else 0.0
            ds = ds.map_batches(
                ShotModelActor, fn_constructor_kwargs={"shots": sh}, batch_size=1,
                compute=ActorPoolStrategy(size=sh.num_actors), num_cpus=sh.num_cpus, num_gpus=gpus, batch_format="numpy",
            )
        results = ds.drop_columns(["frames"]).take_all()
    return replan_with_shots(
        prepared, results, config.clips, config.sampling, config.decode.unit_seconds, config.shots.detector, run_id
    )


class _ClipSink:
    """Driver side of the stream: clip rows to clips/, error rows collected, per-video counts kept."""

    def __init__(self, writer: TableWriter, run_id: str):
        self.writer, self.run_id = writer, run_id
        self.clip_counts: Counter = Counter()
        self.sampled_frames = 0
        self.errors: list[ErrorRow] = []

    def add(self, table: pa.Table) -> None:
        good = table.filter(pc.is_null(table["error_stage"]))
        self.writer.add(good.append_column("run_id", pa.array([self.run_id] * good.num_rows, pa.string())))
        self.clip_counts.update(good["video_id"].to_pylist())
        self.sampled_frames += pc.sum(pc.list_value_length(good["frame_times_s"])).as_py() or 0
        failed = table.filter(pc.is_valid(table["error_stage"]))
        self.errors += [ErrorRow.from_result_row(r) for r in failed.to_pylist()]


def run(config: JobConfig) -> RunSummary:
    """Run the job once over config.inputs; returns the summary also written to runs/<run_id>.json.

    A crash still leaves a manifest (status `crashed`, exit code 1, the error) before the exception propagates.
    """
    if not config.inputs:
        raise ValueError("inputs: at least one video, directory, glob or manifest is required")
    if not config.output:
        raise ValueError("output: an output directory is required")
    started = time.time()
    run_id = config.run_id or new_run_id()
    summary = RunSummary(
        run_id=run_id, output=config.output, status="running", exit_code=EXIT_CRASH, counts=RunCounts(),
        started_at=datetime.now(UTC).isoformat(), wall_s=0.0, pipeline_s=0.0, config=_recorded_config(config),
    )
    so = config.storage_options or None
    try:
        ensure_ray(config.ray)
        _check_capacity(config)
        _run(config, summary, started)
    except ConfigError:
        raise  # refused before anything was written
    except BaseException as e:
        summary.status, summary.exit_code, summary.error = "crashed", EXIT_CRASH, f"{type(e).__name__}: {e}"
        summary.wall_s = time.time() - started
        summary.write(so)
        raise
    summary.write(so)
    return summary


def _run(config: JobConfig, summary: RunSummary, started: float) -> None:
    so = config.storage_options or None
    out, run_id = config.output.rstrip("/"), summary.run_id
    task_fields = task_output_fields(config.tasks)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = config.ray.progress_bars
    ctx.op_resource_reservation_enabled = config.ray.reserve_operator_resources
    t_pipeline = time.time()

    sources, list_errors, ignored = list_videos(config.inputs, config.input, so)
    prepared = _prepare(config, sources)
    if config.clips.clip_mode == "shots":
        shots, prepared = detect_shots(config, prepared, run_id)
        shot_writer = TableWriter(f"{out}/shots", SHOTS, run_id, config.out.rows_per_file, so)
        shot_writer.add(shots)
        summary.files["shots"] = shot_writer.close()
    sink = _ClipSink(TableWriter(f"{out}/clips", clips_schema(task_fields), run_id, config.out.rows_per_file, so), run_id)
    units = [json.dumps(u.to_dict()) for p in prepared for u in p.units]
    if units:
        stream = _clip_stream(config, units, result_schema(task_fields))
        for table in stream.iter_batches(batch_format="pyarrow", batch_size=None):
            sink.add(table)
    summary.files["clips"] = sink.writer.close()

    errors = merge_per_video(list_errors + [p.error for p in prepared if p.error] + sink.errors)
    failed_ids = {e.video_id for e in errors}
    tables = [
        ("videos", _videos_table(prepared, list_errors, sink.clip_counts, failed_ids, run_id), VIDEOS),
        ("errors", errors_table(errors, run_id), ERRORS),
    ]
    for name, table, schema in tables:
        writer = TableWriter(f"{out}/{name}", schema, run_id, config.out.rows_per_file, so)
        writer.add(table)
        summary.files[name] = writer.close()

    ok_videos = [p for p in prepared if p.source.video_id not in failed_ids and p.info]
    summary.counts = RunCounts(
        inputs=len(list_errors) + len(prepared),
        ok=len(ok_videos),
        failed=len(failed_ids),
        clips=sum(sink.clip_counts.values()),
        errors=len(errors),
        sampled_frames=sink.sampled_frames,
        source_frames=sum(p.info.frame_count for p in ok_videos),
        source_seconds=sum(p.info.duration_s for p in ok_videos),
        ignored_files=ignored,
    )
    summary.status, summary.exit_code = status_for(summary.counts)
    summary.wall_s, summary.pipeline_s = time.time() - started, time.time() - t_pipeline
