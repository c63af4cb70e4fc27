"""Head files of every kind: the built-in kinds are registered on import (the API is in head_registry.py)."""
from __future__ import annotations

import hashlib
from typing import Any

import fsspec

from vidbatch.infer import linear_head, temporal_head  # noqa: F401  (registers the built-in head kinds)
from vidbatch.infer.head_registry import (
    HEAD_KINDS,
    ClipHead,
    get_head_kind,
    head_from_bytes,
    head_to_bytes,
)

__all__ = ["HEAD_KINDS", "ClipHead", "get_head_kind", "read_head", "write_head"]


def read_head(path: str, storage_options: dict[str, Any] | None = None) -> tuple[ClipHead, str]:
    """The head and its id (sha1 of the file, 16 hex chars)."""
    try:
        with fsspec.open(path, "rb", **(storage_options or {})) as f:
            data = f.read()
    except FileNotFoundError:
        raise ValueError(f"{path}: head file does not exist") from None
    return head_from_bytes(data, path), hashlib.sha1(data).hexdigest()[:16]


def write_head(head: ClipHead, path: str, storage_options: dict[str, Any] | None = None) -> None:
    with fsspec.open(path, "wb", **(storage_options or {})) as f:
        f.write(head_to_bytes(head))
