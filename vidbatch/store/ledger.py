"""The ledger: what the job has done to each video, so a nightly run processes only what is new.

The ledger holds one row per video, its state; a run replaces the rows of the videos it touched (in one commit).
Comparing the listing with that state sorts every listed video into exactly one of: processed (new, changed,
retry of a failure, backfill after a pipeline change, or rerun in a full run), skipped (unchanged) or quarantined
(failed `quarantine_after` runs in a row and unchanged since).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import pyarrow as pa

from vidbatch.config import IncrementalConfig
from vidbatch.core.schema import LEDGER
from vidbatch.plan.listing import VideoSource
from vidbatch.store.delta import dataset

Reason = Literal["new", "changed", "retry", "backfill", "rerun"]


def read_ledger(out: str, options: dict[str, str] | None) -> dict[str, dict[str, Any]]:
    """Each video's state, by URI, at the ledger's latest version (not a reader's snapshot: a run must see
    what other runs committed since)."""
    ds = dataset(out, "ledger", options)
    if ds is None:
        return {}
    return {row["video_uri"]: row for row in ds.to_table().to_pylist()}


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
    processed: list[tuple[VideoSource, Reason, bool]], deleted: list[dict[str, Any]],
    previous: dict[str, dict[str, Any]], pipeline: str, cfg: IncrementalConfig, run_id: str, now: str,
) -> pa.Table:
    """Rows for this run: (source, reason, ok) per processed video, plus deletions."""
    rows = []
    for source, reason, ok in processed:
        prev = previous.get(source.uri)
        same_version = prev is not None and reason not in ("new", "changed")
        failures = 0 if ok else (prev["consecutive_failures"] if same_version else 0) + 1
        status = "ok" if ok else ("quarantined" if cfg.enabled and failures >= cfg.quarantine_after else "failed")
        rows.append({
            "video_id": source.video_id, "video_uri": source.uri, "size_bytes": source.size, "version": source.version,
            "fingerprint": source.fingerprint, "pipeline": pipeline, "status": status, "reason": reason,
            "consecutive_failures": failures, "updated_at": now, "run_id": run_id,
        })
    for prev in deleted:
        rows.append({**{k: prev[k] for k in LEDGER.names}, "status": "deleted", "reason": "deleted", "updated_at": now, "run_id": run_id})
    return pa.Table.from_pylist(rows, schema=LEDGER)
