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
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import ray
import ray.data
from ray.data import ActorPoolStrategy

from vidbatch.config import ConfigError, JobConfig, RayConfig
from vidbatch.core.errors import ErrorRow, errors_table, failed_videos, merge_per_video
from vidbatch.core.schema import SHOTS, clips_schema, result_schema, thumbnail_fields
from vidbatch.core.storage import OutputStore
from vidbatch.decode.decode_stage import DecodeStage, result_table
from vidbatch.infer.actor import FRAMES_PER_ACTOR_CALL, ClipInferenceActor
from vidbatch.infer.tasks import frame_spec_for, task_output_fields, task_stacks
from vidbatch.job import require_inputs_and_output
from vidbatch.plan.clips import max_samples_per_clip
from vidbatch.plan.frame_plan import FrameLayout
from vidbatch.plan.listing import VideoSource, list_videos, scope_of
from vidbatch.plan.prepare import PreparedVideo, PrepareStage
from vidbatch.shots import get_detector
from vidbatch.shots.planning import replan_with_shots
from vidbatch.shots.stages import ShotDecodeStage, ShotModelActor
from vidbatch.store.commits import (
    STAGING,
    app_id_for,
    find_resumable,
    next_sequence,
    stage_intent,
    staged_units,
)
from vidbatch.store.committed import RUNS, check_layout
from vidbatch.store.delta import delta_storage_options
from vidbatch.store.fingerprint import job_key, pipeline_fingerprint, pipeline_identity
from vidbatch.store.lease import acquire as acquire_lease
from vidbatch.store.ledger import ledger_table, read_ledger, select
from vidbatch.store.manifest import (
    EXIT_CRASH,
    RunCounts,
    RunSummary,
    new_run_id,
    recorded_config,
    status_for,
)
from vidbatch.store.publish import RunTables, publish
from vidbatch.store.sink import UnitSink, unit_targets
from vidbatch.store.tables import stage_shots, videos_table


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
        # "local": always a fresh embedded instance, never a `ray start` cluster that happens to run here
        ray.init(address="local", num_cpus=cfg.num_cpus, include_dashboard=False, log_to_driver=False)


# A worker process that dies (a node lost, OOM-killed, SIGKILL) is not the input's fault: Ray runs its task again,
# or restarts its actor and retries the batch there, a bounded number of times so that a fault that persists ends
# the run (exit 1, resumable) instead of retrying forever (Ray Data's defaults are unbounded). tests/test_faults.py
TASK_RETRIES = {"max_retries": 3}
ACTOR_RESTARTS = {"max_restarts": 3, "max_task_retries": 3}


def _retrying(map_call: Any, *args: Any, **kwargs: Any) -> ray.data.Dataset:
    """map/map_batches with the arguments above; Ray 2.60 takes them only through its deprecated **ray_remote_args."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")
        return map_call(*args, **kwargs)


def _clip_stream(config: JobConfig, units: list[str], schema: pa.Schema) -> ray.data.Dataset:
    """Decode tasks feeding an inference actor pool (or, with no tasks, a frame-dropping map)."""
    layout = FrameLayout(max_samples_per_clip(config.clips, config.sampling), task_stacks(config.tasks))
    k = layout.total  # the job's samples, then the tasks' own (decoded in the same pass)
    spec = frame_spec_for(config.tasks)
    # several blocks per CPU balance the load; one block per unit would flood the scheduler on huge archives
    blocks = min(len(units), max(200, 8 * int(ray.cluster_resources().get("CPU", 1))))
    ds = ray.data.from_items([{"unit_json": u} for u in units], override_num_blocks=blocks)
    # memory: distinct remote args keep decode in its own task pool; fused into the actors it would run serially
    # with inference, on the GPU nodes of a cluster
    decode_args = {"num_cpus": config.decode.num_cpus, "memory": config.decode.memory_mb * 2**20, **TASK_RETRIES}
    ds = _retrying(
        ds.map_batches,
        DecodeStage(
            spec, config.decode.strategy, config.decode.threads, k, config.storage_options or None, config.retry,
            config.out.thumbnail_width if config.out.thumbnails else None, layout,
        ),
        batch_size=1,
        **decode_args,
    )
    if not config.tasks:
        # same remote args: Ray fuses this into the decode tasks, so frames never leave the process that decoded them
        return _retrying(
            ds.map_batches, functools.partial(result_table, schema=schema, task_columns={}), batch_size=None, **decode_args
        )
    inf = config.inference
    gpus = inf.num_gpus
    if gpus is None:
        gpus = 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 and inf.device != "cpu" else 0.0
    return _retrying(
        ds.map_batches,
        ClipInferenceActor,
        fn_constructor_kwargs={"tasks": config.tasks, "cfg": inf, "storage_options": config.storage_options or None},
        batch_size=max(1, (inf.batch_size or FRAMES_PER_ACTOR_CALL) // k),
        compute=ActorPoolStrategy(size=inf.num_actors),
        num_cpus=inf.num_cpus,
        num_gpus=gpus,
        batch_format="numpy",
        **ACTOR_RESTARTS,
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
    stage = PrepareStage(
        config.clips, config.sampling, config.decode.unit_seconds, config.storage_options or None, config.retry,
        config.probe,
    )
    items = [{"source_json": json.dumps(s.to_dict())} for s in sources]
    rows = _retrying(ray.data.from_items(items, override_num_blocks=min(len(items), 256)).map, stage, **TASK_RETRIES).take_all()
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
        ds = _retrying(
            ray.data.from_items(items, override_num_blocks=min(len(items), 256)).map,
            decode, num_cpus=config.decode.num_cpus, memory=config.decode.memory_mb * 2**20, **TASK_RETRIES,
        )
        if get_detector(sh.detector).needs_model:
            gpus = sh.num_gpus
            if gpus is None:
                gpus = 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 and sh.device != "cpu" else 0.0
            ds = _retrying(
                ds.map_batches,
                ShotModelActor, fn_constructor_kwargs={"shots": sh}, batch_size=1,
                compute=ActorPoolStrategy(size=sh.num_actors), num_cpus=sh.num_cpus, num_gpus=gpus, batch_format="numpy",
                **ACTOR_RESTARTS,
            )
        results = ds.drop_columns(["frames"]).take_all()
    return replan_with_shots(
        prepared, results, config.clips, config.sampling, config.decode.unit_seconds, config.shots.detector, run_id
    )


def _with_run_id(config: JobConfig, store: OutputStore, key: str) -> tuple[str, str, int, bool]:
    """(run_id, dt, seq, resumed): a staged run of the same job is resumed under its id, date and sequence
    (seq 0: a new run, numbered once it starts)."""
    staged = find_resumable(store, key, config.run_id)
    if staged:
        return staged["run_id"], staged["dt"], staged["seq"], True
    if config.run_id and store.exists(f"{RUNS}/{config.run_id}.json"):
        raise ConfigError(f"run_id: {config.run_id!r} already ran in {config.output}; choose another id")
    return config.run_id or new_run_id(), datetime.now(UTC).strftime("%Y-%m-%d"), 0, False


def run(config: JobConfig) -> RunSummary:
    """Run the job once over config.inputs; returns the summary also written to runs/<run_id>.json.

    Started again after a crash or kill with the same job, it resumes the staged run. A crash still leaves a
    manifest (status `crashed`, exit code 1, the error) before the exception propagates, unless the run had
    already committed (then its manifest stands).
    """
    require_inputs_and_output(config)
    started = time.time()
    store = OutputStore(config.output, config.storage_options or None, config.retry)
    check_layout(store)
    options = delta_storage_options(config.output, config.storage_options, config.out.delta_storage_options)
    identity = pipeline_identity(config)
    pipeline = pipeline_fingerprint(identity)
    key = job_key(config, pipeline)
    ensure_ray(config.ray)
    _check_capacity(config)  # refused before anything is written
    lease = acquire_lease(store, key, config.run_id or "(starting)")
    try:
        run_id, dt, seq, resumed = _with_run_id(config, store, key)
        lease.rename(run_id)
        summary = RunSummary(
            run_id=run_id, output=config.output, status="running", exit_code=EXIT_CRASH, counts=RunCounts(),
            started_at=datetime.now(UTC).isoformat(), wall_s=0.0, pipeline_s=0.0, config=recorded_config(config),
            dt=dt, pipeline=pipeline, pipeline_identity=identity, resumed=resumed, seq=seq, job_key=key,
        )
        try:
            if not resumed:
                summary.seq = next_sequence(config.output, options, key)
                stage_intent(store, run_id, key, dt, summary.seq)
            _run(config, store, options, summary, started)
        except BaseException as e:
            if summary.committed_at is None:
                summary.status, summary.exit_code, summary.error = "crashed", EXIT_CRASH, f"{type(e).__name__}: {e}"
                summary.wall_s = time.time() - started
                summary.write(store)
            raise
    finally:
        lease.release()
    return summary


def _run(
    config: JobConfig, store: OutputStore, options: dict[str, str] | None, summary: RunSummary, started: float
) -> None:
    so = config.storage_options or None
    run_id, pipeline = summary.run_id, summary.pipeline
    task_fields = task_output_fields(config.tasks)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = config.ray.progress_bars
    ctx.op_resource_reservation_enabled = config.ray.reserve_operator_resources
    t_pipeline = time.time()

    sources, list_errors, ignored = list_videos(config.inputs, config.input, so, config.retry)
    previous = read_ledger(config.output, options)
    scope = None if list_errors else scope_of(config.inputs, config.input, so)
    selection = select(sources, previous, pipeline, config.incremental, scope)
    prepared = _prepare(config, [s for s, _ in selection.process])
    shot_file = None
    if config.clips.clip_mode == "shots":
        shots, prepared = detect_shots(config, prepared, run_id)
        shot_file = stage_shots(store, shots, run_id)

    targets = unit_targets(prepared, pipeline, run_id)
    clip_schema = clips_schema(task_fields + thumbnail_fields(config.out.thumbnails))
    done = {k: o for k, o in staged_units(store, run_id).items() if k in targets}
    sink = UnitSink(store, run_id, pipeline, clip_schema, targets, set(done))
    units = [json.dumps(u.to_dict()) for p in prepared for u in p.units]
    todo = [u for u, k in zip(units, targets) if k not in done]
    if todo:
        stream = _clip_stream(config, todo, result_schema(task_fields))
        for table in stream.iter_batches(batch_format="pyarrow", batch_size=None):
            sink.add(table)
    if sink.unfinished():
        raise RuntimeError(f"{len(sink.unfinished())} work units returned incomplete results")
    outcomes = {**done, **sink.outcomes}

    unit_errors = [ErrorRow(**e) for o in outcomes.values() for e in o.errors]
    errors = merge_per_video(list_errors + [p.error for p in prepared if p.error] + unit_errors)
    clip_counts: Counter = Counter()
    damaged_counts: Counter = Counter()
    for o in outcomes.values():
        clip_counts[o.video_id] += o.clips
        damaged_counts[o.video_id] += o.damaged_clips
    failed_ids = failed_videos(errors, clip_counts)  # a video with damaged clips and one clip written is ok

    now = datetime.now(UTC).isoformat()
    processed = [(s, reason, s.video_id not in failed_ids) for s, reason in selection.process]
    ledger = ledger_table(processed, selection.deleted, previous, pipeline, config.incremental, run_id, now)
    # a video's rows are replaced when it succeeded, or when it has no good rows to keep
    keep_old = {s.video_id for s, _, ok in processed if not ok and (previous.get(s.uri) or {}).get("status") == "ok"}
    tables = RunTables(
        clip_files=sorted(o.file for o in outcomes.values() if o.file), clip_schema=clip_schema,
        shot_file=shot_file, shot_schema=SHOTS if config.clips.clip_mode == "shots" else None,
        replace_ids={s.video_id for s, _, _ in processed} - keep_old,
        videos=videos_table(prepared, list_errors, clip_counts, failed_ids, run_id, damaged_counts),
        errors=errors_table(errors, run_id), ledger=ledger,
    )

    ok_videos = [p for p in prepared if p.source.video_id not in failed_ids and p.info]
    reasons = Counter(reason for _, reason, ok in processed if ok)
    summary.counts = RunCounts(
        inputs=len(sources) + len(list_errors),
        listed=len(sources),
        unreadable_inputs=len(list_errors),
        new=reasons["new"],
        changed=sum(reasons.values()) - reasons["new"],
        skipped=len(selection.skipped),
        failed=sum(1 for _, _, ok in processed if not ok),
        quarantined=len(selection.quarantined),
        deleted=len(selection.deleted),
        ok=sum(reasons.values()),
        clips=sum(clip_counts.values()),
        errors=len(errors),
        sampled_frames=sum(o.sampled_frames for o in outcomes.values()),
        source_frames=sum(p.info.frame_count for p in ok_videos),
        source_seconds=sum(p.info.duration_s for p in ok_videos),
        ignored_files=ignored,
        resumed_units=len(done),
    )
    summary.status, summary.exit_code = status_for(summary.counts, config.out.partial_ok)
    summary.wall_s, summary.pipeline_s = time.time() - started, time.time() - t_pipeline
    summary.write(store)  # the outcome, before the commits; the table versions follow once they land
    summary.table_versions = publish(store, options, app_id_for(summary.job_key), summary.seq, run_id, tables)
    summary.committed_at = datetime.now(UTC).isoformat()
    summary.write(store)
    store.remove_tree(f"{STAGING}/{run_id}")
