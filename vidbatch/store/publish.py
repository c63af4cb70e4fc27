"""Publish a run: one commit per table, each under the run's app transaction, in an order that keeps a crash
between two commits harmless (the ledger, which decides what the next run skips, goes last)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.dataset as pads

from vidbatch.core.schema import FRAMES
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
    frame_files: list[str] = field(default_factory=list)  # staged frames/ rows of the units (out.frame_embeddings)
    writes_frames: bool = False  # the job makes frames; without, a replaced video's old frames go with its clips


def _staged(store: OutputStore, files: list[str], schema: pa.Schema, video_ids: set[str]) -> Callable[[], pa.Table]:
    def read() -> pa.Table:
        if not files or not video_ids:
            return schema.empty_table()
        ds = pads.dataset([store.path(f) for f in files], format="parquet", filesystem=store.fs, schema=schema)
        return ds.to_table(filter=pads.field("video_id").isin(sorted(video_ids)))

    return read


def _staged_stream(
    store: OutputStore, files: list[str], schema: pa.Schema, video_ids: set[str]
) -> tuple[int, Callable[[], pa.RecordBatchReader]]:
    """A large staged table (frames: one row per sampled frame) as its row count and a stream that each commit
    attempt opens anew, so it never sits in the driver's memory whole."""
    if not files or not video_ids:
        return 0, lambda: pa.RecordBatchReader.from_batches(schema, [])
    ds = pads.dataset([store.path(f) for f in files], format="parquet", filesystem=store.fs, schema=schema)
    keep = pads.field("video_id").isin(sorted(video_ids))
    return ds.count_rows(filter=keep), lambda: ds.scanner(filter=keep).to_reader()


def publish(
    store: OutputStore, options: dict[str, str] | None, app_id: str, seq: int, run_id: str, tables: RunTables
) -> dict[str, int]:
    """Commit every table the run touches; returns each output table's version afterwards (a snapshot that
    readers use to see this run's tables together). Every table exists after a run, empty if need be, so
    readers and outside tools find the same set of tables."""
    versions: dict[str, int] = {}
    replace = in_predicate("video_id", tables.replace_ids) if tables.replace_ids else None
    Data = pa.Table | Callable[[], pa.RecordBatchReader]
    writes: list[tuple[str, int, Data, str | None]] = []

    def add(name: str, data: pa.Table, predicate: str | None) -> None:
        writes.append((name, data.num_rows, data, predicate))

    add("clips", _staged(store, tables.clip_files, tables.clip_schema, tables.replace_ids)(), replace)
    if tables.writes_frames or open_table(store.url, "frames", options) is not None:
        # frames follow their clips: a replaced video's frames are replaced too (by none, if the job makes none)
        writes.append(("frames", *_staged_stream(store, tables.frame_files, FRAMES, tables.replace_ids), replace))
    if tables.shot_schema is not None:
        files = [tables.shot_file] if tables.shot_file else []
        add("shots", _staged(store, files, tables.shot_schema, tables.replace_ids)(), replace)
    add("errors", tables.errors, None)
    add("videos", tables.videos, None)
    ledger_ids = tables.ledger["video_id"].to_pylist()
    add("ledger", tables.ledger, in_predicate("video_id", ledger_ids) if ledger_ids else None)
    for name, rows, data, predicate in writes:
        if rows == 0 and predicate is None and open_table(store.url, name, options) is not None:
            continue  # nothing to add or remove
        versions[name] = commit_table(
            store.url, name, data, app_id=app_id, seq=seq, options=options, replace=predicate, metadata={"run_id": run_id}
        )
    return {**existing_tables(store.url, options), **versions}
