"""One typed job configuration: pydantic models only, importing nothing of vidbatch, so every layer may use it.

Checks that need the task or detector registries, or storage, run in `vidbatch.job` after these models validate.

Stages never see this object whole: the pipeline hands each one only the sub-config it uses.
"""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

DEFAULT_EXTENSIONS = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".mpg", ".mpeg", ".ts", ".flv", ".wmv")


class StrictModel(BaseModel):
    """Unknown keys are errors: a typo in a config must never be silently ignored."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class InputConfig(StrictModel):
    extensions: tuple[str, ...] = Field(DEFAULT_EXTENSIONS, description="Suffixes picked up when listing directories and globs.")
    manifest_suffixes: tuple[str, ...] = Field((".txt", ".lst"), description="An input with one of these suffixes is a manifest: one URL per line.")


class ClipConfig(StrictModel):
    clip_seconds: float = Field(2.0, gt=0, description="Length of a fixed clip window.")
    stride_seconds: float | None = Field(None, gt=0, description="Distance between clip starts; defaults to clip_seconds (no overlap).")
    last_clip: Literal["keep", "drop", "pad"] = Field(
        "keep",
        description="What to do with a final window shorter than clip_seconds: keep it short, drop it, or pad it back to a full window ending at the video end.",
    )
    min_last_clip_seconds: float = Field(0.5, ge=0, description="With last_clip=keep, a short last clip below this length is dropped, unless it is the video's only clip.")
    clip_mode: Literal["fixed", "shots"] = Field(
        "fixed", description="fixed: windows of clip_seconds; shots: clips follow the shots found by the `shots` detector."
    )
    min_clip_seconds: float = Field(
        1.0, ge=0, description="clip_mode=shots: a shorter shot is merged into a neighbour (unless the video is shorter)."
    )
    max_clip_seconds: float = Field(
        10.0, gt=0, description="clip_mode=shots: a longer shot is split into equal windows of at most this length."
    )

    @property
    def stride(self) -> float:
        return self.stride_seconds or self.clip_seconds

    @property
    def longest_clip_seconds(self) -> float:
        return self.max_clip_seconds if self.clip_mode == "shots" else self.clip_seconds

    @model_validator(mode="after")
    def _shot_bounds(self) -> ClipConfig:
        # equal windows of a shot split at max are longer than max/2, so they can never fall below min
        if self.min_clip_seconds > self.max_clip_seconds / 2:
            raise ValueError(
                f"min_clip_seconds ({self.min_clip_seconds:g}) must be at most half of max_clip_seconds "
                f"({self.max_clip_seconds:g}), so that split shots never make clips shorter than the minimum"
            )
        return self


class SamplingConfig(StrictModel):
    frames_per_clip: int | None = Field(8, gt=0, le=512, description="Frames sampled uniformly from each clip (at most 512).")
    sample_fps: float | None = Field(None, gt=0, description="Instead of frames_per_clip: sample at this rate.")

    @model_validator(mode="after")
    def _one_rule(self) -> SamplingConfig:
        explicit_frames = "frames_per_clip" in self.model_fields_set and self.frames_per_clip is not None
        if self.sample_fps is not None and explicit_frames:
            raise ValueError("set either frames_per_clip or sample_fps, not both")
        if self.sample_fps is None and self.frames_per_clip is None:
            raise ValueError("set frames_per_clip or sample_fps")
        if self.sample_fps is not None:
            object.__setattr__(self, "frames_per_clip", None)
        return self


class ProbeConfig(StrictModel):
    """Limits on one video's probe and clip plan, so that no single file can stall or swamp a run."""

    timeout_s: float | None = Field(
        120.0, gt=0, description="Time budget per video for probing it and planning its clips; a video over it "
        "becomes one `Timeout` error row and the run goes on. null: no budget."
    )
    max_clips_per_video: int = Field(
        100_000, gt=0, description="A video that would plan more clips becomes one `TooManyClips` error row instead "
        "(100,000 two-second clips are 55 hours)."
    )
    driver_max_videos: int = Field(
        8, ge=0, description="A run with at most this many videos to process probes them on the driver, in threads "
        "while Ray starts, instead of in Ray tasks: a probe dataset's round trip through Ray Data costs seconds even "
        "for one small file. 0: always in Ray tasks."
    )


class DecodeConfig(StrictModel):
    strategy: Literal["auto", "sequential", "seek"] = Field(
        "auto",
        description="Between samples: auto seeks only across gaps longer than the keyframe interval, sequential "
        "always decodes through, seek always seeks. A work unit starts with one seek to its first sample unless "
        "that lies within a keyframe interval of the video start.",
    )
    unit_seconds: float = Field(60.0, gt=0, description="A video is cut into work units of about this much footage.")
    threads: int = Field(
        1, ge=0, description="FFmpeg threads per decode task; 0 lets FFmpeg choose. Parallelism comes from running one "
        "task per reserved CPU, and extra frame threads per task cost CPU (measured in benchmarks/)."
    )
    num_cpus: float = Field(1.0, gt=0, description="Ray CPUs reserved per decode task.")
    memory_mb: Annotated[int, Field(gt=0)] | Literal["auto"] = Field(
        "auto", description="Memory Ray reserves per decode task, in MiB. auto: the most any of the run's work units "
        "needs (its frames in flight on the job's canvas, the decoder's buffers at the source size, the worker; "
        "vidbatch/decode/memory.py). Reserving memory also keeps Ray from fusing decode into the inference actors."
    )


class TaskConfig(StrictModel):
    task: str = Field("classify", description="Name in the task registry.")
    model: str = Field("mobilenet_v2", description="Architecture name (torchvision model name for the built-in tasks).")
    weights: str | None = Field(
        "IMAGENET1K_V1", description="torchvision weight name (enum member or 'DEFAULT'); gives class names and preprocessing."
    )
    weights_path: str | None = Field(None, description="Local path or fsspec URL of a state dict; overrides the torch cache download.")
    top_k: int = Field(5, gt=0, le=100)
    head_path: str | None = Field(
        None, description="`head` task: file written by `vidbatch train-head`; model/weights/weights_path give its embedding model."
    )
    score_threshold: float = Field(0.5, ge=0, le=1, description="detect: keep detections scoring at least this.")
    masks: bool = Field(False, description="segment: also store each sampled frame's class mask as PNG bytes.")


DEVICE_DESCRIPTION = (
    "auto: a GPU per actor when the cluster has GPUs or its autoscaler can add them, else the CPU; cuda: always a "
    "GPU (an actor that cannot use it fails at start-up, naming the CUDA build, the driver and CUDA_VISIBLE_DEVICES); "
    "cpu: never a GPU."
)


def _check_device_and_gpus(device: str, num_gpus: float | None) -> None:
    if device == "cpu" and num_gpus:
        raise ValueError(f"device cpu with num_gpus={num_gpus:g} would hold GPUs it never uses")
    if device == "cuda" and num_gpus == 0:
        raise ValueError("device cuda needs num_gpus above 0 (unset: 1 per actor)")


class InferenceConfig(StrictModel):
    batch_size: int | None = Field(
        None, gt=0, description="Frames per forward pass; default 64 on CUDA, 4 on CPU (small batches stay in cache: "
        "measured 50.7 vs 27.6 images/s for MobileNetV2 at 4 vs 16 on one thread). Halved on CUDA out of memory, per "
        "task, and kept."
    )
    frames_per_call: int | None = Field(
        None, gt=0, description="Frames handed to an actor per Ray call, at least one forward batch; default 512 on "
        "CUDA, so that Ray's per-call cost does not leave the GPU idle; one forward batch on CPU."
    )
    num_actors: int | None = Field(
        None, gt=0, description="Actors in the pool: a GPU pool grows from 1 up to this many (default: as many as the "
        "cluster's GPUs hold, counting those its autoscaler can add); a CPU pool has this size (default, with num_cpus "
        "also unset: one single-threaded actor per cluster CPU, reserving together what decoding's share leaves, "
        "vidbatch/core/devices.py cpu_pool_size)."
    )
    num_cpus: float = Field(
        1.0, gt=0, description="Ray CPUs reserved per actor; when neither this nor num_actors is set, a CPU pool is "
        "sized to the cluster instead (see num_actors)."
    )
    threads: int | None = Field(
        None, gt=0, description="torch CPU threads per actor; default num_cpus. More than num_cpus borrows cores that "
        "decode tasks leave idle once decoding is ahead of inference."
    )
    num_gpus: float | None = Field(
        None, ge=0, description="GPUs per actor (a fraction shares one); unset: 1 when the actors run on GPUs (device)."
    )
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description=DEVICE_DESCRIPTION)
    precision: Literal["fp32", "bf16", "fp16"] = Field(
        "fp32", description="Autocast dtype on CUDA; CPU always runs fp32, and detect runs fp32 under bf16."
    )

    @model_validator(mode="after")
    def _gpus_match_device(self) -> InferenceConfig:
        _check_device_and_gpus(self.device, self.num_gpus)
        return self


class ShotsConfig(StrictModel):
    detector: str = Field("transnetv2", description="Name in the shot detector registry (vidbatch/shots/).")
    threshold: float | None = Field(None, description="Boundary threshold; default per detector (transnetv2 0.5, content 27).")
    min_shot_frames: int | None = Field(
        None, ge=1, description="A boundary closer than this to the previous one is dropped; default per detector (1, 15)."
    )
    batch_size: int | None = Field(
        None, gt=0, description="transnetv2: 100-frame windows per forward pass; default 1 on CPU (larger batches were "
        "slower: benchmarks/README.md), 16 on CUDA."
    )
    num_actors: int | None = Field(
        None, gt=0, description="transnetv2: model actors; as inference.num_actors (a GPU pool grows from 1)."
    )
    num_cpus: float = Field(1.0, gt=0, description="transnetv2: Ray CPUs per actor (also its torch threads on CPU).")
    num_gpus: float | None = Field(None, ge=0, description="transnetv2: GPUs per actor; unset: 1 when on GPUs (device).")
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="transnetv2, as inference.device; `content` runs in the decode tasks on the CPU whatever this says."
    )
    window_frames: int = Field(
        100, gt=50, description="transnetv2: frames per window; each predicts its middle window - 50 "
        "frames. 100 is the package's own scheme (same predictions); longer windows predict more frames per frame "
        "computed (100: every frame runs through the network twice) and gave the same shots on the benchmark videos "
        "(benchmarks/README.md)."
    )
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="transnetv2: `auto` runs bf16 autocast on a CPU with native bf16 (1.9x faster, same shots "
        "on the benchmark videos: benchmarks/README.md) and fp32 elsewhere; fp32 gives the package's predictions exactly."
    )

    @model_validator(mode="after")
    def _gpus_match_device(self) -> ShotsConfig:
        _check_device_and_gpus(self.device, self.num_gpus)
        return self


class RayConfig(StrictModel):
    address: str | None = Field(None, description="Ray cluster address; None starts an embedded local Ray (unless RAY_ADDRESS is set).")
    num_cpus: int | None = Field(None, gt=0, description="CPUs for an embedded local Ray.")
    num_gpus: int | None = Field(None, ge=0, description="GPUs an embedded local Ray offers; default: the ones Ray detects.")
    progress_bars: bool = Field(
        False, description="Ray Data's own per-operator progress bars (vidbatch shows its own progress display instead)."
    )
    reserve_operator_resources: bool = Field(
        False, description="Ray Data's per-operator resource reservation; on small clusters it holds CPUs for idle "
        "operators and serialises the decode tasks (benchmarks/README.md)."
    )


class RetryConfig(StrictModel):
    """Transient object-store failures (5xx, throttling, timeouts, resets) are retried; others fail at once."""

    attempts: int = Field(5, ge=1, le=20, description="Tries per store operation (listing, probe, a work unit's decode, a write).")
    initial_backoff_s: float = Field(0.5, ge=0, description="First wait; doubles with jitter on each retry.")
    max_backoff_s: float = Field(20.0, ge=0, description="Longest single wait.")


class IncrementalConfig(StrictModel):
    """Nightly runs: process only what the ledger has not seen (or has seen fail), skip the rest in seconds."""

    enabled: bool = Field(False, description="Compare the listing with the ledger and process only new, changed or previously failed videos.")
    backfill: bool = Field(False, description="Also reprocess videos last processed by a different pipeline fingerprint (e.g. after a model upgrade).")
    quarantine_after: int = Field(3, ge=1, description="A video that failed this many runs in a row is skipped until it changes.")


class OutputConfig(StrictModel):
    show: int = Field(20, ge=0, description="Clips printed in the summary table after a CLI run.")
    thumbnails: bool = Field(True, description="Store a small JPEG of each clip's middle sampled frame in clips.thumbnail.")
    thumbnail_width: int = Field(160, ge=16, le=1024, description="Thumbnail width in pixels (aspect kept, never upscaled).")
    partial_ok: bool = Field(
        False, description="Exit 0 instead of 3 when the run finished and only inputs failed (their rows are in "
        "errors/), so schedulers that show any non-zero exit as FAILED (Ray Jobs, KubeRay) tell a night with bad "
        "files from a crash. Still 3 when no input could be listed at all."
    )
    frame_embeddings: bool = Field(
        False,
        description="Also write the `frames` table: every sampled frame's embedding from the same forward pass as "
        "the clip's (needs the classify or embed task); temporal heads (`train-head --temporal`) train on it.",
    )
    delta_storage_options: dict[str, str] = Field(
        default_factory=dict,
        description="delta-rs storage options over those derived from storage_options (e.g. `AWS_REGION`, "
        "timeouts); on S3 `conditional_put: etag` is the default and a store must support conditional puts.",
    )


class JobConfig(StrictModel):
    inputs: list[str] = Field(default_factory=list, description="Video files, directories, globs or manifests; any fsspec URL.")
    output: str | None = Field(None, description="Output directory; any fsspec URL.")
    storage_options: dict[str, Any] = Field(default_factory=dict, description="Passed to fsspec for inputs and outputs.")
    input: InputConfig = InputConfig()
    clips: ClipConfig = ClipConfig()
    sampling: SamplingConfig = SamplingConfig()
    probe: ProbeConfig = ProbeConfig()
    decode: DecodeConfig = DecodeConfig()
    tasks: list[TaskConfig] = Field(default_factory=lambda: [TaskConfig()], description="Empty list: decode only.")
    inference: InferenceConfig = InferenceConfig()
    shots: ShotsConfig = ShotsConfig()
    ray: RayConfig = RayConfig()
    out: OutputConfig = OutputConfig()
    retry: RetryConfig = RetryConfig()
    incremental: IncrementalConfig = IncrementalConfig()
    run_id: str | None = Field(
        None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        description="Name the run (default: UTC time + random suffix); starts with a letter or digit.",
    )


class ConfigError(ValueError):
    """A configuration problem, worded for the user (field path first)."""
