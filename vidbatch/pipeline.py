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
import traceback
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

from vidbatch.config import (
    ConfigError,
    InferenceConfig,
    JobConfig,
    RayConfig,
    ShotsConfig,
)
from vidbatch.core.devices import PoolRequest, cpu_pool_size, pool_request
from vidbatch.core.errors import ErrorRow, errors_table, failed_videos, merge_per_video
from vidbatch.core.faults import is_device_fault
from vidbatch.core.schema import SHOTS, clips_schema, result_schema, thumbnail_fields
from vidbatch.core.storage import OutputStore
from vidbatch.decode.decode_stage import DecodeStage, result_table
from vidbatch.infer.actor import ClipInferenceActor, clips_per_call
from vidbatch.infer.tasks import frame_spec_for, task_output_fields, task_stacks
from vidbatch.job import check_storage, require_inputs_and_output
from vidbatch.plan.clips import max_samples_per_clip
from vidbatch.plan.frame_plan import FrameLayout
from vidbatch.plan.listing import VideoSource, list_videos, scope_of
from vidbatch.plan.prepare import PreparedVideo, PrepareStage
from vidbatch.progress import RunProgress
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
from vidbatch.store.ledger import Selection, ledger_table, read_ledger, select
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
        ray.init(
            address="local", num_cpus=cfg.num_cpus, num_gpus=cfg.num_gpus, include_dashboard=False,
            log_to_driver=False, logging_level=level,
        )


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


def _cluster_gpus() -> float:
    """The most GPUs the cluster can have: its autoscaler's node types (the cluster config Ray Data and Ray Train
    read too), else the GPUs it has now."""
    most = ray._private.state.state.get_max_resources_from_cluster_config() or {}
    return max(float(most.get("GPU", 0)), ray.cluster_resources().get("GPU", 0.0))


def _request(cfg: InferenceConfig | ShotsConfig, cluster_gpus: float) -> PoolRequest:
    return pool_request(cfg.device, cfg.num_gpus, cfg.num_actors, cluster_gpus)


def _restarting_on_device_fault(actor_cls: type) -> type:
    """A CUDA error is sticky: the process's CUDA context fails every later call too. Such an actor's process exits,
    so Ray starts a fresh one and retries the batch there (ACTOR_RESTARTS)."""

    class Restarting(actor_cls):  # type: ignore[misc, valid-type]
        def __call__(self, batch: Any) -> Any:
            try:
                return super().__call__(batch)
            except Exception as e:
                if not is_device_fault(e):
                    raise
                traceback.print_exc()
            sys.stderr.flush()
            os._exit(1)

    Restarting.__name__ = Restarting.__qualname__ = actor_cls.__name__
    return Restarting


def _sized_inference(config: JobConfig, cluster_cpus: float, cluster_gpus: float) -> InferenceConfig:
    """A CPU pool whose size the user left open (num_actors and num_cpus unset) is sized to the cluster
    (`cpu_pool_size`); settings the user gave stay as given (threads included)."""
    inf = config.inference
    if _request(inf, cluster_gpus).device != "cpu" or inf.num_actors is not None or "num_cpus" in inf.model_fields_set:
        return inf
    size = cpu_pool_size(cluster_cpus, config.decode.num_cpus)
    return inf.model_copy(
        update={"num_actors": size.actors, "num_cpus": size.num_cpus, "threads": inf.threads or size.threads}
    )


def _map_with_actor_pool(
    ds: ray.data.Dataset, actor_cls: type, constructor_kwargs: dict[str, Any], batch_size: int, request: PoolRequest,
    num_cpus: float, cluster_gpus: float,
) -> ray.data.Dataset:
    """An actor pool stage: what it asks for (request), restarts on CUDA faults, bounded restarts and retries."""
    return _retrying(
        ds.map_batches, _restarting_on_device_fault(actor_cls), fn_constructor_kwargs=constructor_kwargs,
        batch_size=batch_size, batch_format="numpy", **_pool_args(request, num_cpus, cluster_gpus),
    )


def _pool_args(request: PoolRequest, num_cpus: float, cluster_gpus: float) -> dict[str, Any]:
    """map_batches arguments of an actor pool. Ray 2.60 no longer hides GPUs from zero-GPU workers, so a CPU pool
    on a cluster with GPUs is given none to see: nothing in it can touch cuda:0 unreserved."""
    args: dict[str, Any] = {
        "compute": ActorPoolStrategy(min_size=request.min_size, max_size=request.max_size),
        "num_cpus": num_cpus, "num_gpus": request.num_gpus, **ACTOR_RESTARTS,
    }
    if request.device == "cpu" and cluster_gpus > 0:
        args["runtime_env"] = {"env_vars": {"CUDA_VISIBLE_DEVICES": ""}}
    return args



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
    cluster_gpus = _cluster_gpus()
    inf = _sized_inference(config, ray.cluster_resources().get("CPU", 1.0), cluster_gpus)
    request = _request(inf, cluster_gpus)
    constructor = {
        "tasks": config.tasks, "cfg": inf.model_copy(update={"device": request.device}),
        "storage_options": config.storage_options or None, "frame_embeddings": config.out.frame_embeddings,
    }
    return _map_with_actor_pool(
        ds, ClipInferenceActor, constructor, clips_per_call(inf, request.device, k), request, inf.num_cpus, cluster_gpus
    )


def _pool_problems(
    name: str, cfg: InferenceConfig | ShotsConfig, request: PoolRequest, cpus: float, gpus: float, decode_cpus: float
) -> list[str]:
    """What the pool's first actor needs, beside one decode task: Ray Data starts no work before it."""
    problems = []
    need_cpus = request.min_size * cfg.num_cpus + decode_cpus
    if need_cpus > cpus:
        problems.append(
            f"{name}.num_actors x {name}.num_cpus ({request.min_size} x {cfg.num_cpus:g}) plus decode.num_cpus "
            f"({decode_cpus:g}) need {need_cpus:g} CPUs, but the Ray cluster has {cpus:g}: no decode task could run"
        )
    need_gpus = request.min_size * request.num_gpus
    if need_gpus > gpus:
        problems.append(
            f"{name} asks for GPUs ({request.min_size} actor x num_gpus={request.num_gpus:g}, device={cfg.device}), "
            f"the cluster has {gpus:g}"
        )
    return problems


def _check_capacity(config: JobConfig) -> None:
    """Requests the cluster can never grant make Ray Data wait forever (e.g. an actor pool holding every CPU, so no
    decode task can run): refused on an embedded Ray, a warning on a cluster an autoscaler may grow. GPUs count
    what the pools will ask for, and those the cluster's autoscaler can add."""
    cpus, gpus = ray.cluster_resources().get("CPU", 0.0), _cluster_gpus()
    dec, sh = config.decode, config.shots
    problems = []
    if config.tasks:
        inf = _sized_inference(config, cpus, gpus)
        problems += _pool_problems("inference", inf, _request(inf, gpus), cpus, gpus, dec.num_cpus)
    elif dec.num_cpus > cpus:
        problems.append(f"decode.num_cpus ({dec.num_cpus:g}) exceeds the Ray cluster's {cpus:g} CPUs")
    if config.clips.clip_mode == "shots" and get_detector(sh.detector).needs_model:  # `content` runs in decode tasks
        problems += _pool_problems("shots", sh, _request(sh, gpus), cpus, gpus, dec.num_cpus)
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
        config.clips, config.sampling, config.decode.unit_seconds, config.storage_options or None, config.retry,
        config.probe,
    )
    items = [{"source_json": json.dumps(s.to_dict())} for s in sources]
    prepared = []
    probes = _retrying(ray.data.from_items(items, override_num_blocks=min(len(items), 256)).map, stage, **TASK_RETRIES)
    for row in probes.iter_rows():
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
        ds = _retrying(
            ray.data.from_items(items, override_num_blocks=min(len(items), 256)).map,
            decode, num_cpus=config.decode.num_cpus, memory=config.decode.memory_mb * 2**20, **TASK_RETRIES,
        )
        if get_detector(sh.detector).needs_model:
            cluster_gpus = _cluster_gpus()
            request = _request(sh, cluster_gpus)
            ds = _map_with_actor_pool(
                ds, ShotModelActor, {"shots": sh.model_copy(update={"device": request.device})}, 1, request,
                sh.num_cpus, cluster_gpus,
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


def list_and_select(config: JobConfig, store: OutputStore, options: dict[str, str] | None, pipeline: str) -> Listing:
    """List the inputs and sort them against the ledger, on the driver. All inputs missing is bad usage (exit 2):
    nothing could ever be processed."""
    so = config.storage_options or None
    sources, list_errors, ignored = list_videos(config.inputs, config.input, so, config.retry)
    if not sources and list_errors and all(e.error_type == "FileNotFoundError" for e in list_errors):
        first = list_errors[0]
        more = f" (and {len(list_errors) - 1} more)" if len(list_errors) > 1 else ""
        raise ConfigError(f"inputs: nothing to read: {first.uri}: {first.message}{more}")
    previous = read_ledger(config.output, options)
    scope = None if list_errors else scope_of(config.inputs, config.input, so)
    selection = select(sources, previous, pipeline, config.incremental, scope)
    older = sum(1 for s in selection.skipped if previous[s.uri]["pipeline"] != pipeline)
    return Listing(sources, list_errors, ignored, previous, selection, older)


def _nothing_new(config: JobConfig, listing: Listing, started: float) -> RunSummary:
    """The summary of a nightly run that found nothing to do: nothing is written and no Ray is started."""
    sel = listing.selection
    counts = RunCounts(
        inputs=len(listing.sources), listed=len(listing.sources), skipped=len(sel.skipped),
        quarantined=len(sel.quarantined), ignored_files=listing.ignored, older_pipeline=listing.older_pipeline,
    )
    status, exit_code = status_for(counts)
    return RunSummary(
        run_id=new_run_id(), output=config.output or "", status=status, exit_code=exit_code, counts=counts,
        started_at=datetime.now(UTC).isoformat(), wall_s=time.time() - started, pipeline_s=0.0, config={},
    )


def run(config: JobConfig, progress: RunProgress | None = None, verbose: bool = True) -> RunSummary:
    """Run the job once over config.inputs; returns the summary also written to runs/<run_id>.json.

    Started again after a crash or kill with the same job, it resumes the staged run. A crash still leaves a
    manifest (status `crashed`, exit code 1, the error) before the exception propagates, unless the run had
    already committed (then its manifest stands). progress: what to report while running (default: nothing
    shown); verbose=False hides Ray's own log lines (`quiet_ray`).
    """
    require_inputs_and_output(config)
    check_storage(config)
    progress = progress or RunProgress()
    started = time.time()
    store = OutputStore(config.output, config.storage_options or None, config.retry)
    check_layout(store)
    options = delta_storage_options(config.output, config.storage_options, config.out.delta_storage_options)
    identity = pipeline_identity(config)
    pipeline = pipeline_fingerprint(identity)
    key = job_key(config, pipeline)
    progress.phase("list")
    listing = list_and_select(config, store, options, pipeline)
    if config.incremental.enabled and listing.nothing_to_do and find_resumable(store, key, config.run_id) is None:
        return _nothing_new(config, listing, started)
    progress.phase("ray")
    ensure_ray(config.ray, verbose)
    _check_capacity(config)  # refused before anything is written
    lease = acquire_lease(store, key, config.run_id or "(starting)")
    try:
        run_id, dt, seq, resumed = _with_run_id(config, store, key)
        lease.rename(run_id)
        summary = RunSummary(
            run_id=run_id, output=config.output, status="running", exit_code=EXIT_CRASH, counts=RunCounts(),
            started_at=datetime.now(UTC).isoformat(), wall_s=0.0, pipeline_s=0.0, config=recorded_config(config),
            dt=dt, pipeline=pipeline, pipeline_identity=identity, resumed=resumed, seq=seq, job_key=key,
            stage_s=progress.stage_s,  # filled in as the phases end
        )
        try:
            if not resumed:
                summary.seq = next_sequence(config.output, options, key)
                stage_intent(store, run_id, key, dt, summary.seq)
            with quiet_ray(verbose):
                _run(config, store, options, summary, started, listing, progress)
        except BaseException as e:
            if summary.committed_at is None:
                summary.status, summary.exit_code, summary.error = "crashed", EXIT_CRASH, f"{type(e).__name__}: {e}"
                summary.wall_s = time.time() - started
                summary.write(store)
            raise
    finally:
        lease.release()
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
    config: JobConfig, store: OutputStore, options: dict[str, str] | None, summary: RunSummary, started: float,
    listing: Listing, progress: RunProgress,
) -> None:
    run_id, pipeline = summary.run_id, summary.pipeline
    task_fields = task_output_fields(config.tasks)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = config.ray.progress_bars
    ctx.op_resource_reservation_enabled = config.ray.reserve_operator_resources
    t_pipeline = time.time()

    sources, list_errors, ignored, previous, selection = (
        listing.sources, listing.list_errors, listing.ignored, listing.previous, listing.selection
    )
    prepared = _prepare(config, [s for s, _ in selection.process], progress)
    shot_file = None
    if config.clips.clip_mode == "shots":
        shots, prepared = detect_shots(config, prepared, run_id, progress)
        shot_file = stage_shots(store, shots, run_id)

    targets = unit_targets(prepared, pipeline, run_id)
    clip_schema = clips_schema(task_fields + thumbnail_fields(config.out.thumbnails))
    done = {k: o for k, o in staged_units(store, run_id).items() if k in targets}
    frames = config.out.frame_embeddings
    sink = UnitSink(store, run_id, pipeline, clip_schema, targets, set(done), frames)
    units = [json.dumps(u.to_dict()) for p in prepared for u in p.units]
    todo = [u for u, k in zip(units, targets) if k not in done]
    if todo:
        stream = _clip_stream(config, todo, result_schema(task_fields, frames))
        for table in _stream_batches(stream, todo, progress):
            sink.add(table)
            progress.clips_arrived(table.num_rows, units_done=len(sink.outcomes))
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
        frame_files=sorted(o.frames_file for o in outcomes.values() if o.frames_file), writes_frames=frames,
    )

    ok_videos = [p for p in prepared if p.source.video_id not in failed_ids and p.info]
    reasons = Counter(reason for _, reason, ok in processed if ok)
    summary.counts = RunCounts(
        inputs=len(sources) + len(list_errors),
        listed=len(sources),
        unreadable_inputs=len(list_errors),
        new=reasons["new"],
        changed=sum(reasons.values()) - reasons["new"] - reasons["backfill"],
        backfill=reasons["backfill"],
        older_pipeline=listing.older_pipeline,
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
