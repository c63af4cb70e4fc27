"""Wire the Ray-free stages into Ray Data: the only module that imports ray.

probe+plan (tasks) -> decode work units (tasks, streaming generator) -> inference (actor pool)
-> the driver, which writes the small per-clip results. Ray Data's streaming executor bounds memory:
decoded frames exist only between the decode tasks and the actors.
"""
from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import sys
import threading
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import ray
import ray.data
from ray.data import ActorPoolStrategy

from vidbatch.config import ConfigError, JobConfig, RayConfig
from vidbatch.core.errors import ErrorRow, errors_table, merge_per_video
from vidbatch.core.schema import (
    clips_schema,
    result_schema,
    thumbnail_fields,
)
from vidbatch.core.storage import OutputStore
from vidbatch.decode.decode_stage import DecodeStage, result_table
from vidbatch.infer.actor import FRAMES_PER_ACTOR_CALL, ClipInferenceActor
from vidbatch.infer.tasks import frame_spec_for, task_output_fields, task_stacks
from vidbatch.job import check_storage, require_inputs_and_output
from vidbatch.plan.clips import max_samples_per_clip
from vidbatch.plan.frame_plan import FrameLayout
from vidbatch.plan.listing import VideoSource, list_videos, scope_of
from vidbatch.plan.prepare import PreparedVideo, PrepareStage
from vidbatch.shots import get_detector
from vidbatch.shots.planning import replan_with_shots
from vidbatch.progress import RunProgress
from vidbatch.shots.stages import ShotDecodeStage, ShotModelActor
from vidbatch.store.commits import (
    commit,
    committed_run_ids,
    find_resumable,
    stage_intent,
    staged_units,
)
from vidbatch.store.fingerprint import job_key, pipeline_fingerprint, pipeline_identity
from vidbatch.store.ledger import Selection, ledger_table, read_ledger, select
from vidbatch.store.manifest import (
    EXIT_CRASH,
    RunCounts,
    RunSummary,
    new_run_id,
    recorded_config,
    status_for,
)
from vidbatch.store.sink import UnitSink, unit_targets
from vidbatch.store.tables import videos_table, write_shots


def _cluster_address(cfg: RayConfig) -> str | None:
    return cfg.address or os.environ.get("RAY_ADDRESS")


def ensure_ray(cfg: RayConfig, verbose: bool = True) -> None:
    """Join RAY_ADDRESS/--address when given, else start an embedded local Ray (once per process)."""
    if ray.is_initialized():
        return
    address = _cluster_address(cfg)
    level = logging.INFO if verbose else logging.WARNING  # "Started a local Ray instance." and the like
    if address:
        ray.init(address=address, log_to_driver=True, logging_level=level)
    else:
        # "local": always a fresh embedded instance, never a `ray start` cluster that happens to run here
        ray.init(address="local", num_cpus=cfg.num_cpus, include_dashboard=False, log_to_driver=False, logging_level=level)


# Ray core's driver prints this once per process (an ERROR line from C++, straight to fd 2) for every Ray Data actor
# pool: Ray Data itself passes the actor its map function and DataContext as ObjectRefs (ray.put, in
# ActorPoolMapOperator) and gives the actor max_restarts=-1; our constructor kwargs are small and not the cause (a
# pool with one int kwarg prints it too). The refs are owned by the driver and held by the operator while the pool
# lives, so restarts do work; turning restarts off (max_restarts=0, the only knob) would give up recovery from a
# lost node or an OOM-killed actor. So the line is hidden unless -v (ray-project/ray#53727 is the upstream issue).
HIDDEN_DRIVER_LINES = (b"has constructor arguments in the object store and max_restarts > 0",)
# Ray Data warns that its own bars are off; vidbatch's progress display is what shows instead.
HIDDEN_RAY_DATA_MESSAGES = ("Progress bars disabled.",)


class _QuietRayData(logging.Filter):
    """On Ray Data's console handler only (its log file keeps everything): warnings and errors pass, INFO lines
    ("Starting execution of Dataset ...", "... execution finished in 3.31 seconds") and the notices above do not."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING and not record.getMessage().startswith(HIDDEN_RAY_DATA_MESSAGES)


@contextlib.contextmanager
def _drop_stderr_lines(markers: tuple[bytes, ...]) -> Iterator[None]:
    """Pass this process's fd 2 through a thread that drops whole lines containing a marker (what Ray's C++ core
    worker writes there bypasses Python logging). Partial lines pass at once, unless one might be a C++ log line
    (they start with "["), which waits for its newline."""
    sys.stderr.flush()
    saved = os.dup(2)
    read_fd, write_fd = os.pipe()
    os.dup2(write_fd, 2)
    os.close(write_fd)

    def pump() -> None:
        pending = b""
        try:
            while chunk := os.read(read_fd, 65536):
                lines = (pending + chunk).split(b"\n")
                pending = lines.pop()
                kept = [ln + b"\n" for ln in lines if not any(m in ln for m in markers)]
                if pending and not pending.startswith(b"["):
                    kept.append(pending)
                    pending = b""
                if kept:
                    os.write(saved, b"".join(kept))
            if pending:
                os.write(saved, pending)
        except OSError:  # the terminal went away: nothing left to show
            pass
        finally:
            os.close(read_fd)

    thread = threading.Thread(target=pump, name="vidbatch-stderr-filter", daemon=True)
    thread.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)  # drops the pipe's last write end: the pump reads to EOF and ends
        thread.join(timeout=5)
        if not thread.is_alive():  # else a child process holds the pipe: leave the pump forwarding to `saved`
            os.close(saved)


@contextlib.contextmanager
def quiet_ray(verbose: bool) -> Iterator[None]:
    """Ray's own chatter hidden for the duration of a run unless verbose (see HIDDEN_DRIVER_LINES)."""
    if verbose:
        yield
        return
    handlers = [  # the console handler; Ray Data's session log file handler is no StreamHandler
        h for h in logging.getLogger("ray.data").handlers
        if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)
    ]
    quiet = _QuietRayData()
    for h in handlers:
        h.addFilter(quiet)
    try:
        with _drop_stderr_lines(HIDDEN_DRIVER_LINES):
            yield
    finally:
        for h in handlers:
            h.removeFilter(quiet)


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
    decode_args = {"num_cpus": config.decode.num_cpus, "memory": config.decode.memory_mb * 2**20}
    ds = ds.map_batches(
        DecodeStage(
            spec, config.decode.strategy, config.decode.threads, k, config.storage_options or None, config.retry,
            config.out.thumbnail_width if config.out.thumbnails else None, layout,
        ),
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


def _prepare(config: JobConfig, sources: list[VideoSource], progress: RunProgress) -> list[PreparedVideo]:
    """Probe and plan every video in parallel Ray tasks; the plans are small, so they come back to the driver."""
    progress.phase("probe", total=len(sources))
    if not sources:
        return []
    stage = PrepareStage(
        config.clips, config.sampling, config.decode.unit_seconds, config.storage_options or None, config.retry
    )
    items = [{"source_json": json.dumps(s.to_dict())} for s in sources]
    prepared = []
    for row in ray.data.from_items(items, override_num_blocks=min(len(items), 256)).map(stage).iter_rows():
        prepared.append(PreparedVideo.from_json(row["prepared_json"]))
        progress.probed_video()
    order = {s.uri: i for i, s in enumerate(sources)}
    return sorted(prepared, key=lambda p: order[p.source.uri])  # the listing's order, however the rows arrived


def detect_shots(
    config: JobConfig, prepared: list[PreparedVideo], run_id: str, progress: RunProgress | None = None
) -> tuple[pa.Table, list[PreparedVideo]]:
    """clip_mode=shots: decode each probed video once at 48x27 (Ray tasks), find its shots (in the same task, or in
    an actor pool for a detector with a model), then re-plan its clips to follow them on the driver.

    Returns the shots/ table and the re-planned videos; a video whose shot stage failed carries the error instead.
    """
    videos = [p for p in prepared if p.info is not None and p.error is None]
    (progress or RunProgress()).phase("shots")
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


def _with_run_id(config: JobConfig, store: OutputStore, key: str) -> tuple[str, str, bool]:
    """(run_id, dt, resumed): an uncommitted staged run of the same job is resumed under its id and date."""
    staged = find_resumable(store, key, config.run_id)
    if staged:
        return staged["run_id"], staged["dt"], True
    if config.run_id and config.run_id in committed_run_ids(store):
        raise ConfigError(f"run_id: {config.run_id!r} is already committed in {config.output}; choose another id")
    run_id = config.run_id or new_run_id()
    return run_id, datetime.now(UTC).strftime("%Y-%m-%d"), False


@dataclass(frozen=True)
class Listing:
    """What the driver learns before Ray starts: the inputs as listed, the ledger, and what this run must do."""

    sources: list[VideoSource]
    list_errors: list[ErrorRow]
    ignored: int
    previous: dict[str, dict[str, Any]]
    selection: Selection
    older_pipeline: int  # skipped videos whose committed clips come from another pipeline fingerprint (--backfill)

    @property
    def nothing_to_do(self) -> bool:
        """An incremental run with nothing new, changed, failed, deleted or unreadable: Ray is not started."""
        sel = self.selection
        return not (sel.process or sel.deleted or self.list_errors)


def list_and_select(config: JobConfig, store: OutputStore, pipeline: str) -> Listing:
    """List the inputs and sort them against the ledger, on the driver. All inputs missing is bad usage (exit 2):
    nothing could ever be processed."""
    so = config.storage_options or None
    sources, list_errors, ignored = list_videos(config.inputs, config.input, so, config.retry)
    if not sources and list_errors and all(e.error_type == "FileNotFoundError" for e in list_errors):
        first = list_errors[0]
        more = f" (and {len(list_errors) - 1} more)" if len(list_errors) > 1 else ""
        raise ConfigError(f"inputs: nothing to read: {first.uri}: {first.message}{more}")
    previous = read_ledger(store)
    scope = None if list_errors else scope_of(config.inputs, config.input, so)
    selection = select(sources, previous, pipeline, config.incremental, scope)
    older = sum(1 for s in selection.skipped if previous[s.uri]["pipeline"] != pipeline)
    return Listing(sources, list_errors, ignored, previous, selection, older)


def _nothing_new(config: JobConfig, listing: Listing, run_id: str, summary: RunSummary, started: float) -> RunSummary:
    """The summary of a nightly run that found nothing to do: nothing is written and no Ray is started."""
    sel = listing.selection
    summary.counts = RunCounts(
        inputs=len(listing.sources), listed=len(listing.sources), skipped=len(sel.skipped),
        quarantined=len(sel.quarantined), ignored_files=listing.ignored, older_pipeline=listing.older_pipeline,
    )
    summary.status, summary.exit_code = status_for(summary.counts)
    summary.wall_s = time.time() - started
    return summary


def run(config: JobConfig, progress: RunProgress | None = None, verbose: bool = True) -> RunSummary:
    """Run the job once over config.inputs; returns the summary also written to runs/<run_id>.json.

    Started again after a crash or kill with the same job, it resumes the staged run. A crash still leaves a
    manifest (status `crashed`, exit code 1, the error) before the exception propagates. progress: what to
    report while running (default: nothing shown); verbose=False hides Ray's own log lines (`quiet_ray`).
    """
    require_inputs_and_output(config)
    check_storage(config)
    progress = progress or RunProgress()
    started = time.time()
    store = OutputStore(config.output, config.storage_options or None, config.retry)
    identity = pipeline_identity(config)
    pipeline = pipeline_fingerprint(identity)
    key = job_key(config, pipeline)
    run_id, dt, resumed = _with_run_id(config, store, key)
    summary = RunSummary(
        run_id=run_id, output=config.output, status="running", exit_code=EXIT_CRASH, counts=RunCounts(),
        started_at=datetime.now(UTC).isoformat(), wall_s=0.0, pipeline_s=0.0, config=recorded_config(config),
        dt=dt, pipeline=pipeline, pipeline_identity=identity, resumed=resumed,
        stage_s=progress.stage_s,  # filled in as the phases end
    )
    try:
        progress.phase("list")
        listing = list_and_select(config, store, pipeline)
        if config.incremental.enabled and not resumed and listing.nothing_to_do:
            return _nothing_new(config, listing, run_id, summary, started)
        progress.phase("ray")
        ensure_ray(config.ray, verbose)
        _check_capacity(config)
        if not resumed:
            stage_intent(store, run_id, key, dt)
        with quiet_ray(verbose):
            _run(config, store, summary, started, listing, progress)
    except ConfigError:
        raise  # refused before anything was written
    except BaseException as e:
        summary.status, summary.exit_code, summary.error = "crashed", EXIT_CRASH, f"{type(e).__name__}: {e}"
        summary.wall_s = time.time() - started
        summary.write(store)
        raise
    finally:
        progress.done()
    return summary


def _stream_batches(stream: ray.data.Dataset, units: list[str], progress: RunProgress) -> Iterator[pa.Table]:
    """The clip stream's result tables for the driver loop, counted into progress; when it ends, Ray Data's task
    time per operator (decode tasks, inference actors) goes into the manifest's stage_s."""
    progress.phase("stream", total=len(units))
    progress.expect_clips(sum(len(json.loads(u)["clips"]) for u in units))
    yield from stream.iter_batches(batch_format="pyarrow", batch_size=None)
    progress.end_phase()
    pending = [stream.get_stats_summary()]  # the last operator's stats; upstream operators are its parents
    while pending:
        stats = pending.pop()
        pending += stats.parents
        for op in stats.operators_stats:
            if op.wall_time is not None and op.wall_time.count:
                progress.stage_s[f"ray_task_s:{op.operator_name}"] = round(float(op.wall_time.sum), 3)


def _run(
    config: JobConfig, store: OutputStore, summary: RunSummary, started: float, listing: Listing, progress: RunProgress
) -> None:
    run_id, dt, pipeline = summary.run_id, summary.dt, summary.pipeline
    task_fields = task_output_fields(config.tasks)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = config.ray.progress_bars
    ctx.op_resource_reservation_enabled = config.ray.reserve_operator_resources
    t_pipeline = time.time()

    sources, list_errors, ignored, previous, selection = (
        listing.sources, listing.list_errors, listing.ignored, listing.previous, listing.selection
    )
    prepared = _prepare(config, [s for s, _ in selection.process], progress)
    shot_files: dict[str, str] = {}
    if config.clips.clip_mode == "shots":
        shots, prepared = detect_shots(config, prepared, run_id, progress)
        shot_files = write_shots(store, shots, prepared, pipeline, dt)

    targets = unit_targets(prepared, pipeline, dt)
    clip_fields = task_fields + thumbnail_fields(config.out.thumbnails)
    done = {k: o for k, o in staged_units(store, run_id).items() if k in targets}
    sink = UnitSink(store, run_id, clips_schema(clip_fields), targets, set(done))
    units = [json.dumps(u.to_dict()) for p in prepared for u in p.units]
    todo = [u for u, k in zip(units, targets) if k not in done]
    if todo:
        stream = _clip_stream(config, todo, result_schema(task_fields))
        for table in _stream_batches(stream, todo, progress):
            sink.add(table)
            progress.clips_arrived(table.num_rows, units_done=len(sink.outcomes))
    if sink.unfinished():
        raise RuntimeError(f"{len(sink.unfinished())} work units returned incomplete results")
    outcomes = {**done, **sink.outcomes}

    unit_errors = [ErrorRow(**e) for o in outcomes.values() for e in o.errors]
    errors = merge_per_video(list_errors + [p.error for p in prepared if p.error] + unit_errors)
    failed_ids = {e.video_id for e in errors}
    clip_counts: Counter = Counter()
    files: dict[str, list[str]] = {}
    for o in outcomes.values():
        clip_counts[o.video_id] += o.clips
        if o.file:
            files.setdefault(o.video_id, []).append(o.file)
    for video_id, file in shot_files.items():
        files.setdefault(video_id, []).append(file)

    now = datetime.now(UTC).isoformat()
    processed = [
        (s, reason, s.video_id not in failed_ids, sorted(files.get(s.video_id, [])))
        for s, reason in selection.process
    ]
    ledger = ledger_table(processed, selection.deleted, previous, pipeline, config.incremental, run_id, now)
    tables = {"clips": sorted(o.file for o in outcomes.values() if o.file)}
    if shot_files:
        tables["shots"] = sorted(shot_files.values())
    for name, table in [
        ("videos", videos_table(prepared, list_errors, clip_counts, failed_ids, run_id)),
        ("errors", errors_table(errors, run_id)),
        ("ledger", ledger),
    ]:
        tables[name] = [store.write_parquet(f"{name}/dt={dt}/part-{run_id}.parquet", table)]
    replaced = [f for s, _ in selection.process for f in (previous.get(s.uri) or {}).get("files") or []]

    ok_videos = [p for p in prepared if p.source.video_id not in failed_ids and p.info]
    reasons = Counter(reason for _, reason, ok, _ in processed if ok)
    summary.counts = RunCounts(
        inputs=len(sources) + len(list_errors),
        listed=len(sources),
        unreadable_inputs=len(list_errors),
        new=reasons["new"],
        changed=sum(reasons.values()) - reasons["new"] - reasons["backfill"],
        backfill=reasons["backfill"],
        older_pipeline=listing.older_pipeline,
        skipped=len(selection.skipped),
        failed=sum(1 for _, _, ok, _ in processed if not ok),
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
    summary.files = {name: [store.path(f) for f in fs_] for name, fs_ in tables.items()}
    summary.status, summary.exit_code = status_for(summary.counts)
    summary.wall_s, summary.pipeline_s = time.time() - started, time.time() - t_pipeline
    summary.write(store)  # before the commit: a committed run always has its manifest
    commit(store, run_id, tables, replaced, {"dt": dt, "pipeline": pipeline, "status": summary.status})
