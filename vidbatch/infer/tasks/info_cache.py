"""An on-disk cache of built-in tasks' `TaskInfo` (frame spec, own samples, output columns), so that the driver can
plan and validate a job without importing torch and torchvision (about 3 s and 700 MB here; issue 12).

An entry is keyed by the task config and by what its answer can depend on: the installed torch and torchvision
versions and the source of vidbatch's task code. A stale or unreadable entry is a miss; writes are atomic and best
effort (an unwritable cache only means the driver computes the entry again, importing torch).
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
from importlib import metadata
from pathlib import Path
from typing import Any

CACHE_ENV = "VIDBATCH_CACHE_DIR"  # else $XDG_CACHE_HOME/vidbatch or ~/.cache/vidbatch
_PACKAGE = Path(__file__).resolve().parents[2]  # vidbatch/
_SOURCES = ("infer/**/*.py", "core/schema.py", "plan/frame_plan.py", "config.py")


def cache_dir() -> Path:
    base = os.environ.get(CACHE_ENV) or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vidbatch"
    return Path(base) / "task-info"


@functools.cache
def _code_version() -> str:
    h = hashlib.sha256()
    for dist in ("torch", "torchvision"):
        try:
            h.update(f"{dist}={metadata.version(dist)};".encode())
        except metadata.PackageNotFoundError:
            h.update(f"{dist}=none;".encode())
    for path in sorted({p for pattern in _SOURCES for p in _PACKAGE.glob(pattern)}):
        h.update(path.relative_to(_PACKAGE).as_posix().encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def key_for(config: dict[str, Any]) -> str:
    return hashlib.sha256((_code_version() + json.dumps(config, sort_keys=True)).encode()).hexdigest()[:32]


def read(key: str) -> dict[str, Any] | None:
    try:
        return json.loads((cache_dir() / f"{key}.json").read_text())
    except (OSError, ValueError):
        return None


def write(key: str, value: dict[str, Any]) -> None:
    try:
        folder = cache_dir()
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{key}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(value))
        os.replace(tmp, folder / f"{key}.json")
    except OSError:
        pass
