"""Stage, then commit: how a run's files become visible, exactly once, even when the driver is killed.

- A run first writes `_staging/<run_id>/intent.json` (its job key and partition date).
- Each finished work unit writes its clip file under a deterministic name, then a marker
  `_staging/<run_id>/units/<unit_key>.json` recording what the unit produced. A marker exists only after its file.
- Last, `_commits/<committed_at>-<run_id>.json` lists exactly the files the run adds (and the older files it
  replaces). Written in one atomic operation; readers (vidbatch.store.committed) see only files listed in commits.
- Started again with the same job, a run that has an intent but no commit is resumed under the same run id:
  units with markers are not decoded again, and rewriting a unit file writes identical bytes.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from vidbatch.core.storage import OutputStore

STAGING, COMMITS = "_staging", "_commits"


@dataclass
class UnitOutcome:
    """What one work unit produced; enough to rebuild the run's counts and errors without re-decoding it."""

    unit_key: str
    video_id: str
    file: str | None  # clips file, relative to the output root; None when every clip failed
    clips: int
    sampled_frames: int
    errors: list[dict[str, Any]] = field(default_factory=list)  # ErrorRow dicts


def stage_intent(store: OutputStore, run_id: str, job_key: str, dt: str) -> None:
    store.write_json(f"{STAGING}/{run_id}/intent.json", {"run_id": run_id, "job_key": job_key, "dt": dt})


def committed_run_ids(store: OutputStore) -> set[str]:
    return {name.removesuffix(".json").split("-", 1)[1] for name in store.list(COMMITS) if name.endswith(".json")}


def find_resumable(store: OutputStore, job_key: str, run_id: str | None = None) -> dict[str, Any] | None:
    """The newest staged, uncommitted run of the same job (or the named run), if any."""
    done = committed_run_ids(store)
    candidates = [run_id] if run_id else sorted(store.list(STAGING), reverse=True)
    for rid in candidates:
        if rid in done or not store.exists(f"{STAGING}/{rid}/intent.json"):
            continue
        intent = store.read_json(f"{STAGING}/{rid}/intent.json")
        if intent.get("job_key") == job_key:
            return intent
    return None


def record_unit(store: OutputStore, run_id: str, outcome: UnitOutcome) -> None:
    store.write_json(f"{STAGING}/{run_id}/units/{outcome.unit_key}.json", asdict(outcome))


def staged_units(store: OutputStore, run_id: str) -> dict[str, UnitOutcome]:
    units = {}
    for name in store.list(f"{STAGING}/{run_id}/units"):
        if name.endswith(".json"):
            outcome = UnitOutcome(**store.read_json(f"{STAGING}/{run_id}/units/{name}"))
            units[outcome.unit_key] = outcome
    return units


def commit(
    store: OutputStore, run_id: str, tables: dict[str, list[str]], replaced: list[str], meta: dict[str, Any]
) -> str:
    """Publish the run: one atomic write. Names sort by commit time, which is the order readers apply them in."""
    committed_at = datetime.now(UTC)
    added = {f for files in tables.values() for f in files}
    record = {
        "run_id": run_id,
        "committed_at": committed_at.isoformat(),
        "tables": tables,
        "replaced": sorted(set(replaced) - added),
        **meta,
    }
    name = f"{COMMITS}/{committed_at.strftime('%Y%m%dT%H%M%S%fZ')}-{run_id}.json"
    store.write_json(name, record)
    store.remove_tree(f"{STAGING}/{run_id}")
    return name
