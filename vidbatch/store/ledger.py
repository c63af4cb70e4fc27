"""The ledger: what the job has done to each video, so a nightly run processes only what is new.

A run appends one ledger row per video it touched; the latest committed row per URI is that video's state.
Comparing the listing with that state sorts every listed video into exactly one of: processed (new, changed,
retry of a failure, backfill after a pipeline change, or rerun in a full run), skipped (unchanged) or quarantined
(failed `quarantine_after` runs in a row and unchanged since).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq

from vidbatch.config import IncrementalConfig
from vidbatch.core import retry
from vidbatch.core.schema import LEDGER
from vidbatch.core.storage import OutputStore
from vidbatch.plan.listing import VideoSource
from vidbatch.store.committed import commits, live_files

Reason = Literal["new", "changed", "retry", "backfill", "rerun"]


def read_ledger(store: OutputStore) -> dict[str, dict[str, Any]]:
    """Latest committed row per video URI."""
    state: dict[str, dict[str, Any]] = {}
    for rel in live_files(commits(store)).get("ledger", []):
        data = retry.call(store.retry, store.fs.cat_file, store.path(rel))
        for row in pq.read_table(pa.BufferReader(data)).to_pylist():
            state[row["video_uri"]] = row
    return state


@dataclass
class Selection:
    process: list[tuple[VideoSource, Reason]] = field(default_factory=list)
    skipped: list[VideoSource] = field(default_factory=list)
    quarantined: list[VideoSource] = field(default_factory=list)
    deleted: list[dict[str, Any]] = field(default_factory=list)  # ledger rows of videos no longer listed


def _reason(source: VideoSource, prev: dict[str, Any] | None, pipeline: str, cfg: IncrementalConfig) -> Reason | str:
    if prev is None or prev["status"] == "deleted":
        return "new"
    if prev["size_bytes"] != source.size or prev["version"] != source.version:
        return "changed"
    if not cfg.enabled:
        return "rerun"
    if prev["status"] == "quarantined":
        return "quarantined"
    if prev["status"] == "failed":
        return "retry"
    if prev["pipeline"] != pipeline and cfg.backfill:
        return "backfill"
    return "skipped"


def select(
    sources: list[VideoSource], previous: dict[str, dict[str, Any]], pipeline: str, cfg: IncrementalConfig,
    in_scope: Callable[[str], bool] | None,
) -> Selection:
    """Sort the listing against the ledger. in_scope None: the listing was incomplete, so nothing is marked deleted."""
    sel = Selection()
    for source in sources:
        reason = _reason(source, previous.get(source.uri), pipeline, cfg)
        if reason == "skipped":
            sel.skipped.append(source)
        elif reason == "quarantined":
            sel.quarantined.append(source)
        else:
            sel.process.append((source, reason))
    if in_scope is not None:
        listed = {s.uri for s in sources}
        sel.deleted = [
            row for uri, row in previous.items() if row["status"] != "deleted" and uri not in listed and in_scope(uri)
        ]
    return sel


def ledger_table(
    processed: list[tuple[VideoSource, Reason, bool, list[str]]], deleted: list[dict[str, Any]],
    previous: dict[str, dict[str, Any]], pipeline: str, cfg: IncrementalConfig, run_id: str, now: str,
) -> pa.Table:
    """Rows for this run: (source, reason, ok, files) per processed video, plus deletions."""
    rows = []
    for source, reason, ok, files in processed:
        prev = previous.get(source.uri)
        same_version = prev is not None and reason not in ("new", "changed")
        failures = 0 if ok else (prev["consecutive_failures"] if same_version else 0) + 1
        status = "ok" if ok else ("quarantined" if cfg.enabled and failures >= cfg.quarantine_after else "failed")
        rows.append({
            "video_id": source.video_id, "video_uri": source.uri, "size_bytes": source.size, "version": source.version,
            "fingerprint": source.fingerprint, "pipeline": pipeline, "status": status, "reason": reason,
            "consecutive_failures": failures, "files": files, "updated_at": now, "run_id": run_id,
        })
    for prev in deleted:
        rows.append({**prev, "status": "deleted", "reason": "deleted", "updated_at": now, "run_id": run_id})
    return pa.Table.from_pylist(rows, schema=LEDGER)
