"""`vidbatch events`: consecutive clips of a video that share a label, merged into events.

The labels come from a source in EVENT_SOURCES: the clips' top-1 label (`classify`) or a head's predictions
(`head`, from `vidbatch apply-head`). Events are written to the `events` table in one commit that replaces the
earlier events of the same source, and a manifest records the table versions, so readers' snapshots include it.
No video is decoded.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from vidbatch.core.schema import EVENTS
from vidbatch.store.committed import record_snapshot, table_dataset
from vidbatch.store.delta import (
    commit_table,
    delta_storage_options,
    in_predicate,
    open_table,
)

LABELLED_COLUMNS = ("video_id", "video_uri", "start_s", "end_s", "label", "score")


@dataclass(frozen=True)
class LabelledClips:
    clips: pa.Table  # LABELLED_COLUMNS, one row per clip
    head_id: str | None = None


def _classify_labels(out: str, storage_options: dict[str, Any] | None, head_id: str | None) -> LabelledClips:
    ds = table_dataset(out, "clips", storage_options)
    if ds is None or "labels" not in ds.schema.names:
        raise ValueError(f"{out}: no clips with labels (run the job with the classify task)")
    if head_id is not None:
        raise ValueError("--head-id goes with --source head")
    t = ds.to_table(columns=["video_id", "video_uri", "start_s", "end_s", "labels", "scores"], filter=pc.field("labels").is_valid())
    t = t.filter(pc.greater(pc.list_value_length(t["labels"]), 0))
    label, score = pc.list_element(t["labels"], 0), pc.list_element(t["scores"], 0)
    return LabelledClips(t.drop_columns(["labels", "scores"]).append_column("label", label).append_column("score", score))


def _head_labels(out: str, storage_options: dict[str, Any] | None, head_id: str | None) -> LabelledClips:
    """The predictions of head `head_id`, by default of the head applied last."""
    ds = table_dataset(out, "head_predictions", storage_options)
    if ds is None:
        raise ValueError(f"{out}: no head_predictions (run `vidbatch apply-head OUT head.pt` first)")
    t = ds.to_table(columns=["video_id", "clip_id", "start_s", "end_s", "label", "score", "head_id", "applied_at"])
    heads = t.group_by("head_id").aggregate([("applied_at", "max")]).sort_by([("applied_at_max", "descending")])
    known = heads["head_id"].to_pylist()
    if head_id is None and known:
        head_id = known[0]
    if head_id not in known:
        raise ValueError(f"{out}: no predictions of head {head_id!r}; heads applied: {known}")
    t = t.filter(pc.equal(t["head_id"], head_id))
    clips = table_dataset(out, "clips", storage_options)
    uris = clips.to_table(columns=["clip_id", "video_uri"]) if clips is not None else pa.table({"clip_id": [], "video_uri": []})
    t = t.join(uris, "clip_id", join_type="inner")  # predictions of clips a later run replaced are left out
    return LabelledClips(t.select(list(LABELLED_COLUMNS)), head_id)


# --source -> where the clips' labels come from
EVENT_SOURCES: dict[str, Callable[[str, dict[str, Any] | None, str | None], LabelledClips]] = {
    "classify": _classify_labels,
    "head": _head_labels,
}


def merge_events(clips: pa.Table, min_seconds: float = 0.0) -> list[dict[str, Any]]:
    """Per video, in time order, runs of consecutive clips with one label; runs shorter than min_seconds are left out.
    Rows: video_id, video_uri, event_index, start_s, end_s, label, score (mean), clip_count."""
    events: list[dict[str, Any]] = []
    per_video: Counter = Counter()
    rows = clips.sort_by([("video_id", "ascending"), ("start_s", "ascending"), ("end_s", "ascending")]).to_pylist()
    current: dict[str, Any] | None = None

    def close() -> None:
        if current is not None and current["end_s"] - current["start_s"] >= min_seconds - 1e-9:
            index = per_video[current["video_id"]]
            per_video[current["video_id"]] += 1
            events.append({**current, "event_index": index, "score": current["score"] / current["clip_count"]})

    for r in rows:
        if current is not None and (r["video_id"], r["label"]) == (current["video_id"], current["label"]):
            current["end_s"] = max(current["end_s"], r["end_s"])
            current["score"] += r["score"]
            current["clip_count"] += 1
            continue
        close()
        current = {**r, "clip_count": 1}
    close()
    return events


@dataclass(frozen=True)
class EventsResult:
    events: pa.Table  # EVENTS
    version: int
    head_id: str | None


def make_events(
    out: str, source: str = "classify", min_seconds: float = 0.0, head_id: str | None = None,
    storage_options: dict[str, Any] | None = None,
) -> EventsResult:
    if source not in EVENT_SOURCES:
        raise ValueError(f"--source {source!r}: choose one of {', '.join(EVENT_SOURCES)}")
    labelled = EVENT_SOURCES[source](out, storage_options, head_id)
    events = merge_events(labelled.clips, min_seconds)
    now = datetime.now(UTC)
    table = pa.Table.from_pylist(
        [{**e, "source": source, "head_id": labelled.head_id, "made_at": now} for e in events], schema=EVENTS
    )
    options = delta_storage_options(out, storage_options)
    app_id = f"vidbatch-events-{source}"
    existing = open_table(out, "events", options)
    seq = 1 + ((existing.transaction_version(app_id) or 0) if existing is not None else 0)
    version = commit_table(
        out, "events", table, app_id=app_id, seq=seq, options=options, replace=in_predicate("source", [source]),
        metadata={"run_id": f"events-{source}-{now.strftime('%Y%m%dT%H%M%S%fZ')}"},
    )
    record_snapshot(out, storage_options, "events", source=source, head_id=labelled.head_id, rows=table.num_rows)
    return EventsResult(table, version, labelled.head_id)
