"""Keep an output directory small: vacuum (unreferenced files, abandoned staging) and optimize (compaction)."""
from __future__ import annotations

import time
from typing import Any

from vidbatch.core.storage import OutputStore
from vidbatch.store import delta
from vidbatch.store.commits import abandoned_staging
from vidbatch.store.committed import check_layout, record_snapshot
from vidbatch.store.lease import live_holders
from vidbatch.store.vector_index import update_after_commit


def _output(out: str, storage_options: dict[str, Any] | None) -> tuple[OutputStore, dict[str, str] | None]:
    store = OutputStore(out, storage_options)
    check_layout(store)
    if not delta.existing_tables(out, delta.delta_storage_options(out, storage_options)):
        raise ValueError(f"{out}: no vidbatch output tables here")
    return store, delta.delta_storage_options(out, storage_options)


def vacuum_output(
    out: str, storage_options: dict[str, Any] | None, retain_hours: int, dry_run: bool
) -> dict[str, list[str]]:
    """Per table, the files removed (or that would be); `_staging` lists the abandoned runs' directories. A run
    that still holds its lease keeps its staging, however old."""
    store, options = _output(out, storage_options)
    removed = delta.vacuum(out, options, retain_hours, dry_run)
    running = {h["run_id"] for h in live_holders(store)}
    stale = [d for d in abandoned_staging(store, retain_hours * 3600.0, time.time()) if d.rsplit("/", 1)[-1] not in running]
    if not dry_run:
        for rel in stale:
            store.remove_tree(rel)
    removed["_staging"] = stale
    return removed


def optimize_output(out: str, storage_options: dict[str, Any] | None, zorder_by: list[str] | None) -> dict[str, Any]:
    """Compacts every table; readers' snapshot moves to the compacted versions (same rows), so vacuum may then
    remove the small files."""
    store, options = _output(out, storage_options)
    metrics = delta.optimize(out, options, zorder_by)
    update_after_commit(store, options)  # compaction rewrote the clips files: the index re-reads them
    record_snapshot(out, storage_options, "optimize", zorder_by=zorder_by or [])
    return metrics

