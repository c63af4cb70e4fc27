"""The output directory on any fsspec file system: whole-file writes that readers never see half done.

Local files are written to a temporary name and renamed (atomic on POSIX); object stores publish an object only
when its single PUT completes. Every store operation is retried on transient failures (vidbatch.core.retry).
"""
from __future__ import annotations

import io
import json
import os
import uuid
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem

from vidbatch.config import RetryConfig
from vidbatch.core import retry


class OutputStore:
    """Paths are relative to the output root, so an output directory can be copied or moved whole."""

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None, retry_cfg: RetryConfig | None = None):
        self.url = url.rstrip("/")
        self.fs, root = url_to_fs(self.url, **(storage_options or {}))
        self.root = root.rstrip("/")
        self.retry = retry_cfg or RetryConfig()
        self.local = isinstance(self.fs, LocalFileSystem)

    def path(self, rel: str) -> str:
        return f"{self.root}/{rel}"

    def _put(self, rel: str, data: bytes) -> None:
        final = self.path(rel)
        if self.local:
            os.makedirs(os.path.dirname(final), exist_ok=True)
            tmp = f"{final}.tmp-{uuid.uuid4().hex[:8]}"
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, final)
        else:
            self.fs.pipe_file(final, data)

    def write_bytes(self, rel: str, data: bytes) -> str:
        retry.call(self.retry, self._put, rel, data)
        return rel

    def write_parquet(self, rel: str, table: pa.Table) -> str:
        """Same rows in, same bytes out: a re-run rewriting a file changes nothing a reader can see."""
        buf = io.BytesIO()
        pq.write_table(table, buf, compression="zstd")
        return self.write_bytes(rel, buf.getvalue())

    def write_json(self, rel: str, obj: Any) -> str:
        return self.write_bytes(rel, json.dumps(obj, indent=2, default=str).encode())

    def read_json(self, rel: str) -> Any:
        return json.loads(retry.call(self.retry, self.fs.cat_file, self.path(rel)))

    def exists(self, rel: str) -> bool:
        return retry.call(self.retry, self.fs.exists, self.path(rel))

    def list(self, rel_dir: str) -> list[str]:
        """Names (not paths) directly under rel_dir; none when it does not exist."""
        try:
            entries = retry.call(self.retry, self.fs.ls, self.path(rel_dir), detail=False, refresh=True)
        except FileNotFoundError:
            return []
        return sorted(e.rstrip("/").rsplit("/", 1)[-1] for e in entries)

    def remove_tree(self, rel_dir: str) -> None:
        try:
            retry.call(self.retry, self.fs.rm, self.path(rel_dir), recursive=True)
        except FileNotFoundError:
            pass
