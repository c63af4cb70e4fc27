"""Read a job's output directory as its readers must: only files that a commit published.

Every tool that reads outputs (query, search, report, heads, the ledger) goes through here, so a run in progress
or a killed run is never half visible.
"""
from __future__ import annotations

from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.dataset as pads

from vidbatch.core.storage import OutputStore
from vidbatch.store.commits import COMMITS


def commits(store: OutputStore) -> list[dict[str, Any]]:
    """Commit records, oldest first."""
    return [store.read_json(f"{COMMITS}/{n}") for n in store.list(COMMITS) if n.endswith(".json")]


def live_files(records: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Per table, the files of the current state: each commit adds its files and drops the ones it replaced."""
    live: dict[str, dict[str, None]] = {}
    for rec in records:
        replaced = set(rec.get("replaced", []))
        for files in live.values():
            for f in replaced & files.keys():
                del files[f]
        for table, files in rec["tables"].items():
            live.setdefault(table, {}).update(dict.fromkeys(files))
    return {table: list(files) for table, files in live.items()}


def open_fs(out: str, storage_options: dict[str, Any] | None = None) -> tuple[fsspec.AbstractFileSystem, str]:
    store = OutputStore(out, storage_options)
    return store.fs, store.root


def table_files(out: str, table: str, storage_options: dict[str, Any] | None = None) -> list[str]:
    """Paths (file-system paths, no protocol) of one table's committed Parquet files."""
    store = OutputStore(out, storage_options)
    return [store.path(f) for f in live_files(commits(store)).get(table, [])]


def table_dataset(out: str, table: str, storage_options: dict[str, Any] | None = None) -> pads.Dataset | None:
    """A lazy pyarrow dataset over the table's committed files (Hive partitions `dt=`, `pipeline=` become
    columns), or None when no commit has the table.

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
    """runs/<run_id>.json of every committed run, oldest commit first."""
    store = OutputStore(out, storage_options)
    names = [f"runs/{rec['run_id']}.json" for rec in commits(store)]
    return [store.read_json(n) for n in dict.fromkeys(names) if store.exists(n)]
