"""Stage, then commit: how a run's rows become visible exactly once, even when the driver is killed.

- A run first writes `_staging/<run_id>/intent.json`: its job key, partition date and run sequence number.
- The probe tasks write the planned work units to `_staging/<run_id>/plans/` (vidbatch.store.plans); a resumed
  run plans again and finds its finished units by their keys.
- Each finished work unit writes its clip rows to `_staging/<run_id>/units/<unit_key>.parquet`, then a marker
  `<unit_key>.json` recording what the unit produced. A marker exists only after its rows. Staging paths carry the
  run id, so a run never writes over a file that another run staged or committed.
- Last, each Delta table gets one commit under the app transaction (job key, sequence) (vidbatch.store.delta).
- Started again with the same job, a staged run is resumed under the same run id: units with markers are not
  decoded again, and tables whose log already holds the run's transaction are not written again.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from vidbatch.core.storage import OutputStore
from vidbatch.store.delta import TABLES, open_table

STAGING = "_staging"


@dataclass
class UnitOutcome:
    """What one work unit produced; enough to rebuild the run's counts and errors without re-decoding it."""

    unit_key: str
    video_id: str
    file: str | None  # staged clip rows, relative to the output root; None when every clip failed
    clips: int
    sampled_frames: int
    errors: list[dict[str, Any]] = field(default_factory=list)  # ErrorRow dicts
    damaged_clips: int = 0  # clips that met undecodable data (written with stand-in frames, or lost: DamagedClip)
    frames_file: str | None = None  # staged frames/ rows (out.frame_embeddings), relative to the output root


def app_id_for(job_key: str) -> str:
    return f"vidbatch-{job_key}"


def next_sequence(out: str, options: dict[str, str] | None, job_key: str) -> int:
    """One more than the job's last committed run in any table (a run that never committed leaves no trace)."""
    app_id = app_id_for(job_key)
    done = [open_table(out, name, options) for name in TABLES]
    return 1 + max([t.transaction_version(app_id) or 0 for t in done if t is not None], default=0)


def stage_intent(store: OutputStore, run_id: str, job_key: str, dt: str, seq: int) -> None:
    store.write_json(f"{STAGING}/{run_id}/intent.json", {"run_id": run_id, "job_key": job_key, "dt": dt, "seq": seq})


def find_resumable(store: OutputStore, job_key: str, run_id: str | None = None) -> dict[str, Any] | None:
    """The newest staged run of the same job (or the named run), if any: staging is removed once a run commits."""
    candidates = [run_id] if run_id else sorted(store.list(STAGING), reverse=True)
    for rid in candidates:
        if not store.exists(f"{STAGING}/{rid}/intent.json"):
            continue
        intent = store.read_json(f"{STAGING}/{rid}/intent.json")
        if intent.get("job_key") == job_key:
            return intent
    return None


def unit_file(run_id: str, unit_key: str) -> str:
    return f"{STAGING}/{run_id}/units/{unit_key}.parquet"


def unit_frames_file(run_id: str, unit_key: str) -> str:
    """The unit's frames/ rows, staged next to its clip rows."""
    return f"{STAGING}/{run_id}/units/{unit_key}.frames.parquet"


def record_unit(store: OutputStore, run_id: str, outcome: UnitOutcome) -> None:
    store.write_json(f"{STAGING}/{run_id}/units/{outcome.unit_key}.json", asdict(outcome))


def staged_units(store: OutputStore, run_id: str) -> dict[str, UnitOutcome]:
    units = {}
    for name in store.list(f"{STAGING}/{run_id}/units"):
        if name.endswith(".json"):
            outcome = UnitOutcome(**store.read_json(f"{STAGING}/{run_id}/units/{name}"))
            units[outcome.unit_key] = outcome
    return units


def abandoned_staging(store: OutputStore, older_than_s: float, now: float) -> list[str]:
    """Staging directories of runs that were never resumed, by the age of their intent."""
    stale = []
    for rid in store.list(STAGING):
        intent = f"{STAGING}/{rid}/intent.json"
        try:
            modified = store.fs.modified(store.path(intent)).timestamp()
        except FileNotFoundError:
            modified = 0.0
        if now - modified > older_than_s:
            stale.append(f"{STAGING}/{rid}")
    return stale
