"""Wire the Ray-free stages into Ray Data: the only module that imports ray.

probe+plan (tasks) -> decode work units (tasks, streaming generator) -> inference (actor pool)
-> the driver, which writes the small per-clip results. Ray Data's streaming executor bounds memory:
decoded frames exist only between the decode tasks and the actors.
"""
from __future__ import annotations

import contextlib
import functools
import importlib
import json
import logging
import os
import sys
import threading
import time
import traceback
import uuid
import warnings
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
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
from vidbatch.decode.decode_stage import Batch, DecodeStage, result_table
from vidbatch.decode.memory import MiB, UnitShape, decode_budget
from vidbatch.infer.batching import clips_per_call
from vidbatch.infer.tasks import frame_spec_for, task_output_fields, task_stacks
from vidbatch.job import check_storage, require_inputs_and_output
from vidbatch.plan.clips import max_samples_per_clip
from vidbatch.plan.frame_plan import FrameLayout, FrameSpec
from vidbatch.plan.listing import VideoSource, list_videos, scope_of
from vidbatch.plan.prepare import PreparedVideo, PrepareStage
from vidbatch.progress import RunProgress
from vidbatch.shots import get_detector
from vidbatch.shots.planning import replan_with_shots
from vidbatch.shots.stages import ShotDecodeStage, ShotModelActor, video_results
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
    DECODE_NODE,
    DECODE_TASK,
    EXIT_CRASH,
    INFER_BATCH,
    INFER_NODE,
    NodeTally,
    RunCounts,
    RunSummary,
    new_run_id,
    recorded_config,
    status_for,
)
from vidbatch.store.publish import RunTables, publish
from vidbatch.store.plans import PlanStage, UnitSlices, VideoPlan, stage_plans, unit_slices
from vidbatch.store.sink import UnitSink
from vidbatch.store.tables import stage_shots, videos_table
from vidbatch.store.vector_index import update_after_commit


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


def _imported_in_actor(path: str) -> type:
    """The actor class at `module:Class`, imported only in the actor's process when it starts: the driver names
    the inference actor but never imports it, because it imports torch (seconds and ~700 MB in the driver)."""
    module, name = path.split(":")

    class Imported:
        def __init__(self, **kwargs: Any) -> None:
            self.actor = getattr(importlib.import_module(module), name)(**kwargs)

        def __call__(self, batch: Any) -> Any:
            return self.actor(batch)

    Imported.__name__ = Imported.__qualname__ = name  # Ray Data's operator name: MapBatches(ClipInferenceActor)
    return Imported


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


def _placement_stages() -> tuple[type[DecodeStage], Any, type]:
    """The decode stage, the no-task result map and the inference actor, their rows stamped with the Ray node and
    task (or batch) that made them, for the manifest's `nodes`. Made inside a function so that cloudpickle ships
    them by value: a decode worker imports the Ray-free decode stage only, not this module (and torch with it)."""

    def stamp(table: pa.Table, batch: Batch, infer_node: str = "", infer_batch: str = "") -> pa.Table:
        n = table.num_rows
        for name, values in (
            (DECODE_NODE, batch[DECODE_NODE].tolist()), (DECODE_TASK, batch[DECODE_TASK].tolist()),
            (INFER_NODE, [infer_node] * n), (INFER_BATCH, [infer_batch] * n),
        ):
            table = table.append_column(name, pa.array(values, pa.string()))
        return table

    class Decode(DecodeStage):
        def __call__(self, batch: Batch) -> Iterator[Batch]:
            ctx = ray.get_runtime_context()
            node, task = ctx.get_node_id(), ctx.get_task_id() or ""
            for out in super().__call__(batch):
                n = len(out["clip_id"])
                out[DECODE_NODE], out[DECODE_TASK] = np.array([node] * n), np.array([task] * n)
                yield out

    def decoded_rows(batch: Batch, schema: pa.Schema) -> pa.Table:
        """With no tasks: the frames dropped, the rows kept."""
        return stamp(result_table(batch, schema, {}), batch)

    class Infer(_imported_in_actor("vidbatch.infer.actor:ClipInferenceActor")):  # type: ignore[misc]
        def __call__(self, batch: Batch) -> pa.Table:
            return stamp(super().__call__(batch), batch, ray.get_runtime_context().get_node_id(), uuid.uuid4().hex)

    # the names Ray Data gives the operators (and Ray the worker processes), as before the stamping
    Decode.__name__, decoded_rows.__name__, Infer.__name__ = "DecodeStage", "result_table", "ClipInferenceActor"
    return Decode, decoded_rows, Infer


_DecodeOnNode, _decoded_rows, _InferOnNode = _placement_stages()


def _largest_node_memory() -> float:
    """The most `memory` any live node offers: a decode task asking for more waits forever."""
    return max((n["Resources"].get("memory", 0.0) for n in ray.nodes() if n["Alive"]), default=0.0)


def decode_memory(config: JobConfig, shapes: list[UnitShape], slots: int, spec: FrameSpec) -> int:
    """Bytes Ray reserves per decode task: decode.memory_mb, or (auto) the largest budget of the run's units (shapes:
    their videos' widest units)."""
    if config.decode.memory_mb != "auto":
        return config.decode.memory_mb * MiB
    block = ray.data.DataContext.get_current().target_max_block_size or ray.data.context.DEFAULT_TARGET_MAX_BLOCK_SIZE
    thumbs = config.out.thumbnail_width if config.out.thumbnails else None
    need = max(
        (decode_budget(shape, slots, spec, config.decode.threads, block, thumbs).total for shape in shapes), default=0
    )
    if need > (largest := _largest_node_memory()):
        problem = (
            f"decode.memory_mb: a work unit needs {-(-need // MiB)} MiB per decode task (auto), more than any Ray node "
            f"has ({largest / MiB:.0f} MiB); lower decode.unit_seconds or the frames per clip, or set decode.memory_mb"
        )
        if not _cluster_address(config.ray):
            raise ConfigError(problem)
        warnings.warn(problem + " (waiting for an autoscaler to add nodes)", stacklevel=2)
    return need


def _clip_stream(
    config: JobConfig, slices: list[dict[str, Any]], shapes: list[UnitShape], schema: pa.Schema
) -> ray.data.Dataset:
    """Decode tasks feeding an inference actor pool (or, with no tasks, a frame-dropping map). slices: the staged
    units to decode (vidbatch.store.plans.unit_slices), one block each; each decode task reads its own units."""
    layout = FrameLayout(max_samples_per_clip(config.clips, config.sampling), task_stacks(config.tasks))
    k = layout.total  # the job's samples, then the tasks' own (decoded in the same pass)
    spec = frame_spec_for(config.tasks)
    ds = ray.data.from_items(slices, override_num_blocks=len(slices))
    # memory: distinct remote args keep decode in its own task pool; fused into the actors it would run serially
    # with inference, on the GPU nodes of a cluster
    # Ray Data's own SPREAD scheduling (its DataContext default) places the tasks across nodes
    decode_args = {"num_cpus": config.decode.num_cpus, "memory": decode_memory(config, shapes, k, spec), **TASK_RETRIES}
    # same remote args: reading the slice's units is fused into the decode task
    ds = _retrying(ds.flat_map, UnitSlices(config.output, config.storage_options or None, config.retry), **decode_args)
    ds = _retrying(
        ds.map_batches,
        _DecodeOnNode(
            spec, config.decode.strategy, config.decode.threads, k, config.storage_options or None, config.retry,
            config.out.thumbnail_width if config.out.thumbnails else None, layout,
        ),
        batch_size=1,
        **decode_args,
    )
    if not config.tasks:
        # same remote args: Ray fuses this into the decode tasks, so frames never leave the process that decoded them
        return _retrying(ds.map_batches, functools.partial(_decoded_rows, schema=schema), batch_size=None, **decode_args)
    cluster_gpus = _cluster_gpus()
    inf = _sized_inference(config, ray.cluster_resources().get("CPU", 1.0), cluster_gpus)
    request = _request(inf, cluster_gpus)
    constructor = {
        "tasks": config.tasks, "cfg": inf.model_copy(update={"device": request.device}),
        "storage_options": config.storage_options or None, "frame_embeddings": config.out.frame_embeddings,
    }
    return _map_with_actor_pool(
        ds, _InferOnNode, constructor, clips_per_call(inf, request.device, k), request, inf.num_cpus, cluster_gpus
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
    if dec.memory_mb != "auto" and dec.memory_mb * MiB > (largest := _largest_node_memory()):
        problems.append(f"decode.memory_mb ({dec.memory_mb}) exceeds the most memory a Ray node has ({largest / MiB:.0f} MiB)")
    if config.clips.clip_mode == "shots" and get_detector(sh.detector).needs_model:  # `content` runs in decode tasks
        problems += _pool_problems("shots", sh, _request(sh, gpus), cpus, gpus, dec.num_cpus)
    if not problems:
        return
    if _cluster_address(config.ray):
        warnings.warn("; ".join(problems) + " (waiting for an autoscaler to add nodes)", stacklevel=2)
    else:
        raise ConfigError("; ".join(problems))


def _prepare_stage(config: JobConfig) -> PrepareStage:
    return PrepareStage(
        config.clips, config.sampling, config.decode.unit_seconds, config.storage_options or None, config.retry,
        config.probe,
    )


def _probe_on_driver(config: JobConfig, sources: list[VideoSource]) -> list[Future[PreparedVideo]] | None:
    """Up to probe.driver_max_videos videos are probed here, in threads, started before Ray so that they overlap
    its start-up: a probe dataset through Ray Data (worker start, planning, scheduling) took 2.6 s for one 2 s
    video (issue 12), the probe itself tens of ms. None: probe in Ray tasks."""
    if not sources or len(sources) > config.probe.driver_max_videos:
        return None
    stage = _prepare_stage(config)
    pool = ThreadPoolExecutor(max_workers=min(len(sources), os.cpu_count() or 1), thread_name_prefix="vidbatch-probe")
    futures = [pool.submit(stage.prepare, s) for s in sources]
    pool.shutdown(wait=False)
    return futures


def _prepare(
    config: JobConfig, store: OutputStore, sources: list[VideoSource], progress: RunProgress, run_id: str,
    on_driver: list[Future[PreparedVideo]] | None = None,
) -> list[VideoPlan]:
    """Probe and plan every video in parallel Ray tasks, which stage the units, or take the driver's few probes
    (`_probe_on_driver`) and stage their units here (shots: the units come later)."""
    stage_units = config.clips.clip_mode != "shots"
    if on_driver is None:
        stage = PlanStage(
            _prepare_stage(config), config.output, run_id, config.storage_options or None, config.retry, stage_units
        )
        return plan_videos(stage, sources, progress)
    progress.phase("probe", total=len(sources))
    prepared = []
    for future in on_driver:  # the listing's order
        video = future.result()
        prepared.append(video if stage_units else PreparedVideo(video.source, video.info, (), video.error))
        progress.probed_video()
    return stage_plans(store, run_id, prepared)


def plan_videos(stage: PlanStage, sources: list[VideoSource], progress: RunProgress) -> list[VideoPlan]:
    """Probe tasks plan their videos and stage the units; only a small VideoPlan per video (no clips) comes back
    to the driver, in the listing's order."""
    progress.phase("probe", total=len(sources))
    if not sources:
        return []
    items = [{"source_json": json.dumps(s.to_dict())} for s in sources]
    ds = ray.data.from_items(items, override_num_blocks=min(len(items), 256))
    plans = []
    for row in _retrying(ds.map_batches, stage, batch_size=None, **TASK_RETRIES).iter_rows():
        plans.append(VideoPlan.from_json(row["plan_json"]))
        progress.probed_video()
    order = {s.uri: i for i, s in enumerate(sources)}
    return sorted(plans, key=lambda p: order[p.video.source.uri])  # however the rows arrived


SHOT_DECODE_MB = 512  # what decode.memory_mb was before auto: the shot stage's 48x27 decode is budgeted apart


def _shot_decode_memory(config: JobConfig) -> int:
    mb = config.decode.memory_mb
    return (SHOT_DECODE_MB if mb == "auto" else mb) * MiB


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
        ctx = ray.data.DataContext.get_current()
        saved_block_size = ctx.target_max_block_size
        # one chunk row per block: a decode task then holds the few blocks Ray's streaming backpressure lets it run
        # ahead, whatever the video's length, instead of buffering rows up to the default 128 MiB block
        ctx.target_max_block_size = 2**20
        try:
            ds = _retrying(
                ray.data.from_items(items, override_num_blocks=min(len(items), 256)).flat_map,
                decode, num_cpus=config.decode.num_cpus, memory=_shot_decode_memory(config), **TASK_RETRIES,
            )
            if get_detector(sh.detector).needs_model:
                cluster_gpus = _cluster_gpus()
                request = _request(sh, cluster_gpus)
                ds = _map_with_actor_pool(
                    ds, ShotModelActor, {"shots": sh.model_copy(update={"device": request.device})}, 1, request,
                    sh.num_cpus, cluster_gpus,
                )
            results = video_results(ds.drop_columns(["frames"]).iter_rows(), sh)
        finally:
            ctx.target_max_block_size = saved_block_size
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
    selection: Selection

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
    scope = None if list_errors else scope_of(config.inputs, config.input, so)
    ledger = read_ledger(config.output, options, [s.uri for s in sources], scope)
    return Listing(sources, list_errors, ignored, select(sources, ledger, pipeline, config.incremental, scope))


def _nothing_new(config: JobConfig, listing: Listing, started: float) -> RunSummary:
    """The summary of a nightly run that found nothing to do: nothing is written and no Ray is started."""
    sel = listing.selection
    counts = RunCounts(
        inputs=len(listing.sources), listed=len(listing.sources), skipped=sel.skipped,
        quarantined=sel.quarantined, ignored_files=listing.ignored, older_pipeline=sel.older_pipeline,
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
    on_driver = _probe_on_driver(config, [s for s, _ in listing.selection.process])
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
                _run(config, store, options, summary, started, listing, progress, on_driver)
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


def _node_addresses() -> dict[str, str]:
    return {n["NodeID"]: n["NodeManagerAddress"] for n in ray.nodes()}


def _stream_batches(stream: ray.data.Dataset, units: int, clips: int, progress: RunProgress) -> Iterator[pa.Table]:
    """The clip stream's result tables for the driver loop, counted into progress; when it ends, Ray Data's task
    time per operator (decode tasks, inference actors) goes into the manifest's stage_s."""
    progress.phase("stream", total=units)
    progress.expect_clips(clips)
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
    listing: Listing, progress: RunProgress, on_driver: list[Future[PreparedVideo]] | None = None,
) -> None:
    run_id, pipeline = summary.run_id, summary.pipeline
    task_fields = task_output_fields(config.tasks)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = config.ray.progress_bars
    ctx.op_resource_reservation_enabled = config.ray.reserve_operator_resources
    t_pipeline = time.time()

    sources, list_errors, ignored, selection = listing.sources, listing.list_errors, listing.ignored, listing.selection
    previous = selection.previous
    plans = _prepare(config, store, [s for s, _ in selection.process], progress, run_id, on_driver)
    shot_file = None
    if config.clips.clip_mode == "shots":  # the shots re-plan the clips on the driver, then their units are staged
        shots, replanned = detect_shots(config, [p.video for p in plans], run_id, progress)
        shot_file = stage_shots(store, shots, run_id)
        # in plan files of a few videos each: a decode task reads the whole file that holds its slice
        plans = [p for i in range(0, len(replanned), 64) for p in stage_plans(store, run_id, replanned[i : i + 64])]

    clip_schema = clips_schema(task_fields + thumbnail_fields(config.out.thumbnails))
    staged = staged_units(store, run_id)
    todo = unit_slices(plans, pipeline, set(staged), max(200, 8 * int(ray.cluster_resources().get("CPU", 1))))
    done = {k: staged[k] for k in todo.done}
    frames = config.out.frame_embeddings
    sink = UnitSink(store, run_id, pipeline, clip_schema, plans, todo.done, todo.units, frames)
    if todo.slices:
        shapes = [p.shape for p in plans if p.shape]
        stream = _clip_stream(config, todo.slices, shapes, result_schema(task_fields, frames))
        nodes = NodeTally()
        for table in _stream_batches(stream, todo.units, todo.clips, progress):
            nodes.add(table)
            sink.add(table)
            progress.clips_arrived(table.num_rows, units_done=len(sink.outcomes))
        summary.nodes = nodes.to_dict(_node_addresses())
    if sink.unfinished():
        raise RuntimeError(f"{sink.unfinished()} work units returned incomplete results")
    outcomes = {**done, **sink.outcomes}
    prepared = [p.video for p in plans]

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
        older_pipeline=selection.older_pipeline,
        skipped=selection.skipped,
        failed=sum(1 for _, _, ok in processed if not ok),
        quarantined=selection.quarantined,
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
    update_after_commit(store, options)  # the search index, once the run is committed: it cannot undo the run
