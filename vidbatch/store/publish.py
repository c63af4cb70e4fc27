"""Publish a run: one commit per table, each under the run's app transaction, in an order that keeps a crash
between two commits harmless (the ledger, which decides what the next run skips, goes last)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.dataset as pads

from vidbatch.core.storage import OutputStore
from vidbatch.store.delta import commit_table, existing_tables, in_predicate, open_table


@dataclass(frozen=True)
class RunTables:
    """What a finished run adds. Clip and shot rows come from staging; only `replace_ids` videos are written,
    and their older rows are replaced in the same commit (a failed re-process keeps its old rows)."""

    clip_files: list[str]  # staged unit files, relative to the output root
    clip_schema: pa.Schema
    shot_file: str | None  # staged shots of the run, if it found any
    shot_schema: pa.Schema | None  # None: the job finds no shots (clip_mode fixed)
    replace_ids: set[str]  # video_ids whose clips and shots this run replaces
    videos: pa.Table  # appended: one row per input of this run
    errors: pa.Table  # appended
    ledger: pa.Table  # one row per video: replaces the videos' earlier state


def _staged(store: OutputStore, files: list[str], schema: pa.Schema, video_ids: set[str]) -> Callable[[], pa.Table]:
    def read() -> pa.Table:
        if not files or not video_ids:
            return schema.empty_table()
        ds = pads.dataset([store.path(f) for f in files], format="parquet", filesystem=store.fs, schema=schema)
        return ds.to_table(filter=pads.field("video_id").isin(sorted(video_ids)))

    return read


def publish(
    store: OutputStore, options: dict[str, str] | None, app_id: str, seq: int, run_id: str, tables: RunTables
) -> dict[str, int]:
    """Commit every table the run touches; returns each output table's version afterwards (a snapshot that
    readers use to see this run's tables together). Every table exists after a run, empty if need be, so
    readers and outside tools find the same set of tables."""
    versions: dict[str, int] = {}
    replace = in_predicate("video_id", tables.replace_ids) if tables.replace_ids else None
    writes: list[tuple[str, pa.Table, str | None]] = [
        ("clips", _staged(store, tables.clip_files, tables.clip_schema, tables.replace_ids)(), replace),
        ("errors", tables.errors, None),
        ("videos", tables.videos, None),
    ]
    if tables.shot_schema is not None:
        files = [tables.shot_file] if tables.shot_file else []
        writes.insert(1, ("shots", _staged(store, files, tables.shot_schema, tables.replace_ids)(), replace))
    ledger_ids = tables.ledger["video_id"].to_pylist()
    writes.append(("ledger", tables.ledger, in_predicate("video_id", ledger_ids) if ledger_ids else None))
    for name, data, predicate in writes:
        if data.num_rows == 0 and predicate is None and open_table(store.url, name, options) is not None:
            continue  # nothing to add or remove
        versions[name] = commit_table(
            store.url, name, data, app_id=app_id, seq=seq, options=options, replace=predicate, metadata={"run_id": run_id}
        )
    return {**existing_tables(store.url, options), **versions}
