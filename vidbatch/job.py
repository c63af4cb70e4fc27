"""Load and validate a job: the pydantic models first, then the checks that need the task and shot-detector
registries or storage. Every problem is worded with its field path first, as pydantic words its own."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import fsspec
import yaml
from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem
from fsspec.registry import known_implementations
from fsspec.utils import get_protocol
from pydantic import ValidationError

from vidbatch.config import ConfigError, JobConfig, ShotsConfig
from vidbatch.infer.tasks import TASKS, frame_spec_for, task_output_fields
from vidbatch.plan.clips import MAX_SAMPLES_PER_CLIP, max_samples_per_clip
from vidbatch.shots import DETECTORS, get_detector


def _invalid(lines: list[str]) -> ConfigError:
    return ConfigError("invalid config:\n  " + "\n  ".join(lines))


def _format_validation_error(err: ValidationError) -> ConfigError:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        lines.append(f"{loc}: {msg}" if loc else msg)
    return _invalid(lines)


def _shots_problems(cfg: JobConfig) -> list[str]:
    sh = cfg.shots
    if sh.detector not in DETECTORS.known():
        return [f"shots.detector: unknown shot detector {sh.detector!r}; known: {DETECTORS.known()}"]
    if sh.threshold is None and sh.min_shot_frames is None:
        return []  # the detector's defaults: nothing to check, and its module (perhaps importing torch) stays unloaded
    try:
        get_detector(sh.detector).check_options(sh.threshold, sh.min_shot_frames)
    except ValueError as e:
        return [f"shots: {e}"]
    return []


def _task_problems(cfg: JobConfig) -> list[str]:
    """Unknown task, model or weights name, a missing checkpoint, tasks writing the same column."""
    for i, t in enumerate(cfg.tasks):
        if t.task not in TASKS.known():
            return [f"tasks.{i}.task: unknown task {t.task!r}; known: {TASKS.known()}"]
        for name in ("weights_path", "head_path"):
            problem = getattr(t, name) and _missing_backend(getattr(t, name))
            if problem:
                return [f"tasks.{i}.{name}: {problem}"]
        try:
            task_output_fields([t])
        except (ValueError, KeyError) as e:
            return [f"tasks.{i}: {e}"]
        if t.weights_path is not None:
            fs, path = url_to_fs(t.weights_path, **cfg.storage_options)
            if not fs.exists(path):
                return [f"tasks.{i}.weights_path: {t.weights_path} does not exist"]
    try:
        task_output_fields(cfg.tasks)
        frame_spec_for(cfg.tasks)
    except ValueError as e:
        return [str(e)]
    return []


def _frames_problems(cfg: JobConfig) -> list[str]:
    """out.frame_embeddings keeps the per-frame embeddings of the task that writes `embedding`."""
    if not cfg.out.frame_embeddings or any(f.name == "embedding" for f in task_output_fields(cfg.tasks)):
        return []
    return ["out.frame_embeddings: needs a task that makes embeddings (classify or embed)"]


def _sampling_problems(cfg: JobConfig) -> list[str]:
    samples = max_samples_per_clip(cfg.clips, cfg.sampling)
    if samples <= MAX_SAMPLES_PER_CLIP:
        return []
    length = "max_clip_seconds" if cfg.clips.clip_mode == "shots" else "clip_seconds"
    return [f"sampling.sample_fps x clips.{length} gives {samples} frames per clip; the limit is {MAX_SAMPLES_PER_CLIP}"]


def validate_config(data: dict[str, Any] | JobConfig) -> JobConfig:
    """The one validation at the edge (CLI, Python API, job entrypoints)."""
    if isinstance(data, JobConfig):
        data = data.model_dump()
    try:
        cfg = JobConfig.model_validate(data)
    except ValidationError as e:
        raise _format_validation_error(e) from None
    problems = _shots_problems(cfg) + _task_problems(cfg) + _sampling_problems(cfg)
    problems = problems or _frames_problems(cfg)
    if problems:
        raise _invalid(problems)
    return cfg


def shots_config(options: dict[str, Any]) -> ShotsConfig:
    """A `shots:` config on its own (`vidbatch shots`), validated as inside a job."""
    try:
        cfg = JobConfig.model_validate({"shots": {k: v for k, v in options.items() if v is not None}})
    except ValidationError as e:
        raise _format_validation_error(e) from None
    problems = _shots_problems(cfg)
    if problems:
        raise _invalid(problems)
    return cfg.shots


def require_inputs_and_output(cfg: JobConfig) -> None:
    """A run needs both; checked before anything starts, by every entrypoint."""
    if not cfg.output:
        raise ConfigError("output: required (-o/--output or `output:` in the config)")
    if not cfg.inputs:
        raise ConfigError("inputs: required (ARCHIVE arguments or `inputs:` in the config)")


def _missing_backend(url: str) -> str | None:
    """Why no file system can open url (its fsspec package is not installed, with the pip command), else None."""
    for part in url.split("::"):  # chained URLs: simplecache::s3://...
        protocol = get_protocol(part)
        try:
            fsspec.get_filesystem_class(protocol)
        except ImportError:
            package = known_implementations.get(protocol, {}).get("class", protocol).split(".")[0]
            return f"{url}: {protocol}:// needs the {package} package: pip install {package}"
        except ValueError:
            return f"{url}: no fsspec file system for {protocol}://"
    return None


def _output_problem(output: str, storage_options: dict[str, Any]) -> str | None:
    """An output that is a file, or (on a local disk) a directory this user cannot write."""
    fs, path = url_to_fs(output, **storage_options)
    if fs.isfile(path):
        return f"{output} is a file; give a directory (it is created if missing)"
    if not isinstance(fs, LocalFileSystem):
        return None  # an object store says whether a write is allowed only when one is tried
    existing = Path(path)
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        return f"{output}: {existing} is a file, so the directory cannot be created"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{output}: {existing} is not writable by this user"
    return None


def check_storage(cfg: JobConfig) -> None:
    """What the file systems can refuse before Ray starts, each in one line: an input or output URL whose fsspec
    package is missing (checkpoints are checked with the tasks), an output that is a file or not writable."""
    for field, url in [("output", cfg.output), *(("inputs", u) for u in cfg.inputs)]:
        problem = _missing_backend(url)
        if problem:
            raise ConfigError(f"{field}: {problem}")
    problem = _output_problem(cfg.output, cfg.storage_options)
    if problem:
        raise ConfigError(f"output: {problem}")


def _set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Apply one `a.b.0.c=value` override onto nested dicts and lists."""
    keys = dotted.split(".")
    node: Any = data
    for key, nxt in zip(keys, keys[1:] + [None]):
        if isinstance(node, list):
            if not key.isdigit():
                raise ConfigError(f"{dotted}: {key!r} is not a list index")
            idx = int(key)
            node.extend({} for _ in range(idx + 1 - len(node)))
            slot: Any = idx
        else:
            slot = key
        if nxt is None:
            node[slot] = value
        else:
            if not isinstance(node[slot] if isinstance(node, list) else node.get(slot), (dict, list)):
                node[slot] = [] if nxt.isdigit() else {}
            node = node[slot]


def load_config(
    path: str | Path | None = None, overrides: dict[str, Any] | None = None, sets: list[str] | None = None
) -> JobConfig:
    """Build a JobConfig from an optional YAML file, then dotted `--set k=v` strings, then explicit overrides."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text())
        except OSError as e:
            raise ConfigError(f"config file {path}: {e.strerror}") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"config file {path}: not valid YAML: {e}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"config file {path}: top level must be a mapping")
        data = loaded or {}
    for item in sets or []:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as e:
            raise ConfigError(f"--set {item!r}: value is not valid YAML: {e}") from None
        _set_path(data, key.strip(), value)
    for key, value in (overrides or {}).items():
        if value is not None:
            _set_path(data, key, value)
    return validate_config(data)
