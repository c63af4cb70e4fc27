"""The ledger: what the job has done to each video, so a nightly run processes only what is new.

The ledger holds one row per video, its state; a run replaces the rows of the videos it touched (in one commit).
Comparing the listing with that state sorts every listed video into exactly one of: processed (new, changed,
retry of a failure, backfill after a pipeline change, or rerun in a full run), skipped (unchanged) or quarantined
(failed `quarantine_after` runs in a row and unchanged since).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vidbatch.config import IncrementalConfig
from vidbatch.core.schema import LEDGER
from vidbatch.plan.listing import Scope, VideoSource
from vidbatch.store.delta import dataset

Reason = Literal["new", "changed", "retry", "backfill", "rerun"]


# what comparing a listed video needs of its ledger row
COMPARED = ["video_uri", "size_bytes", "version", "pipeline", "status", "consecutive_failures"]


def read_ledger(out: str, options: dict[str, str] | None, uris: list[str], scope: Scope | None) -> pa.Table:
    """The ledger rows a run compares against, at the ledger's latest version (not a reader's snapshot: a run must
    see what other runs committed since): those of the listed URIs and, with a scope, every other row in it (the
    candidates for deletion). Filtered in the scan, so an output shared by many archives costs only their rows."""
    ds = dataset(out, "ledger", options)
    if ds is None:
        return LEDGER.empty_table()
    keep = pc.field("video_uri").isin(pa.array(uris, pa.string()))
    return ds.to_table(filter=keep if scope is None else keep | scope.expression("video_uri")).cast(LEDGER)


@dataclass
class Selection:
    """Every listed video sorted into one of processed (with its reason), skipped or quarantined (counted)."""

    process: list[tuple[VideoSource, Reason]] = field(default_factory=list)
    skipped: int = 0
    quarantined: int = 0
    older_pipeline: int = 0  # skipped videos whose committed clips come from another pipeline fingerprint (--backfill)
    previous: dict[str, dict[str, Any]] = field(default_factory=dict)  # ledger rows of the processed videos, by URI
    deleted: list[dict[str, Any]] = field(default_factory=list)  # ledger rows of videos no longer listed


# a listed video's reason is the first of these that holds (np.select keeps that order)
REASONS = ("new", "changed", "rerun", "quarantined", "retry", "backfill", "skipped")


def _known(expr: pa.ChunkedArray) -> np.ndarray:
    """A comparison as booleans, unknown (a video the ledger has not seen) as False."""
    return expr.fill_null(False).to_numpy(zero_copy_only=False).astype(bool)


def _reasons(joined: pa.Table, pipeline: str, cfg: IncrementalConfig) -> np.ndarray:
    """Each listed video's reason (an index into REASONS), from the listing joined with its ledger row."""
    mask = _known
    status = joined["status"]
    conditions = [
        mask(pc.or_kleene(pc.is_null(status), pc.equal(status, "deleted"))),
        mask(pc.or_kleene(pc.not_equal(joined["size_bytes"], joined["listed_size"]),
                          pc.not_equal(joined["version"], joined["listed_version"]))),
        np.full(joined.num_rows, not cfg.enabled),
        mask(pc.equal(status, "quarantined")),
        mask(pc.equal(status, "failed")),
        mask(pc.not_equal(joined["pipeline"], pipeline)) & cfg.backfill,
    ]
    return np.select(conditions, np.arange(len(conditions)), default=len(REASONS) - 1)


def select(
    sources: list[VideoSource], ledger: pa.Table, pipeline: str, cfg: IncrementalConfig, in_scope: Scope | None
) -> Selection:
    """Sort the listing against the ledger (read_ledger's rows), column by column: only processed and deleted
    videos become Python rows. in_scope None: the listing was incomplete, so nothing is marked deleted."""
    listing = pa.table({
        "video_uri": pa.array([s.uri for s in sources], pa.string()),
        "listed_size": pa.array([s.size for s in sources], pa.int64()),
        "listed_version": pa.array([s.version for s in sources], pa.string()),
        "listed_at": pa.array(np.arange(len(sources))),
    })
    joined = listing.join(ledger.select(COMPARED), "video_uri", join_type="left outer").sort_by("listed_at")
    reasons = _reasons(joined, pipeline, cfg)
    counts = np.bincount(reasons, minlength=len(REASONS))
    sel = Selection(skipped=int(counts[-1]), quarantined=int(counts[REASONS.index("quarantined")]))
    skipped = reasons == len(REASONS) - 1
    sel.older_pipeline = int((skipped & _known(pc.not_equal(joined["pipeline"], pipeline))).sum())
    todo = np.flatnonzero((reasons != len(REASONS) - 1) & (reasons != REASONS.index("quarantined")))
    sel.process = [(sources[i], REASONS[r]) for i, r in zip(todo.tolist(), reasons[todo].tolist())]  # type: ignore[misc]
    processed = pa.array([sources[i].uri for i in todo.tolist()], pa.string())
    sel.previous = {r["video_uri"]: r for r in ledger.filter(pc.is_in(ledger["video_uri"], processed)).to_pylist()}
    if in_scope is not None:
        gone = ledger.filter(pc.invert(pc.is_in(ledger["video_uri"], listing["video_uri"])))
        gone = gone.filter(pc.not_equal(gone["status"], "deleted"))
        sel.deleted = [row for row in gone.to_pylist() if in_scope(row["video_uri"])]
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
