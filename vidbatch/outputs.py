"""The one way readers reach a job's output: committed Parquet files per table, and the run manifests.

Every reader (query, search, report, heads) goes through these functions, so what counts as committed data is
decided in one place.
"""
from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
import pyarrow.dataset as pads
from fsspec import AbstractFileSystem
from fsspec.core import url_to_fs


def open_fs(out: str, storage_options: dict[str, Any] | None = None) -> tuple[AbstractFileSystem, str]:
    """The output's filesystem and its root path there (no protocol)."""
    fs, root = url_to_fs(out, **(storage_options or {}))
    return fs, root.rstrip("/")


def table_files(out: str, table: str, storage_options: dict[str, Any] | None = None) -> list[str]:
    """Paths (no protocol) of the table's Parquet files, sorted; empty when the table does not exist."""
    fs, root = open_fs(out, storage_options)
    return sorted(fs.glob(f"{root}/{table}/**/*.parquet"))


def table_dataset(out: str, table: str, storage_options: dict[str, Any] | None = None) -> pads.Dataset | None:
    """A lazy pyarrow dataset over the table's files (Hive partitions become columns), or None when absent.

    Files of runs with other settings may have extra columns (thumbnails, a head task): the dataset's schema is
    the union, missing columns read as null.
    """
    files = table_files(out, table, storage_options)
    if not files:
        return None
    fs, root = open_fs(out, storage_options)
    ds = pads.dataset(files, format="parquet", filesystem=fs, partitioning="hive", partition_base_dir=f"{root}/{table}")
    schemas = [ds.schema, *(frag.physical_schema for frag in ds.get_fragments())]
    if all(s.equals(ds.schema) for s in schemas):
        return ds
    return ds.replace_schema(pa.unify_schemas(schemas, promote_options="permissive"))


def run_manifests(out: str, storage_options: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Parsed runs/*.json, oldest first (by start time, then run id)."""
    fs, root = open_fs(out, storage_options)
    manifests = []
    for path in fs.glob(f"{root}/runs/*.json"):
        with fs.open(path, "r") as f:
            manifests.append(json.load(f))
    return sorted(manifests, key=lambda m: (m.get("started_at") or "", m.get("run_id") or ""))
