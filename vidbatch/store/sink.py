"""The driver's end of the clip stream: rows gathered per work unit, each finished unit written and marked at once."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from vidbatch.core.errors import ErrorRow, is_damaged_clip
from vidbatch.core.schema import RESULT_DAMAGE_FIELD
from vidbatch.core.storage import OutputStore
from vidbatch.plan.prepare import PreparedVideo
from vidbatch.store.commits import UnitOutcome, record_unit, unit_file, unit_frames_file
from vidbatch.store.tables import frames_table


@dataclass(frozen=True)
class UnitTarget:
    key: str
    video_id: str
    file: str  # the unit's staged clip rows, relative to the output root
    clip_index: dict[str, int]  # clip_id -> clip_index, the clips the unit must account for


def unit_targets(prepared: list[PreparedVideo], pipeline: str, run_id: str) -> dict[str, UnitTarget]:
    """Each work unit's key, from the video's content fingerprint, the unit and the pipeline, and its staging file."""
    targets = {}
    for p in prepared:
        for u in p.units:
            key = hashlib.sha1(f"{p.source.fingerprint}|{u.unit_index}|{pipeline}".encode()).hexdigest()[:20]
            file = unit_file(run_id, key)
            targets[key] = UnitTarget(key, u.video_id, file, {c.clip_id: c.clip_index for c in u.clips})
    return targets


class UnitSink:
    """Driver side of the stream: rows gathered per work unit; a finished unit is written and marked at once,
    so a killed run loses at most the units in flight."""

    def __init__(
        self, store: OutputStore, run_id: str, pipeline: str, schema: pa.Schema, targets: dict[str, UnitTarget],
        staged: set[str], frames: bool = False,
    ):
        """staged: units a killed attempt of this run already finished; they are neither expected nor written.
        frames: the rows carry `frame_embeddings`; each unit's frames/ rows are staged next to its clip rows."""
        self.store, self.run_id, self.pipeline, self.schema = store, run_id, pipeline, schema
        self.frames = frames
        self.targets = targets
        self.unit_of = {cid: t.key for t in targets.values() for cid in t.clip_index}
        self.pending = {k: set(t.clip_index) for k, t in targets.items() if k not in staged}
        self.rows: dict[str, list[pa.Table]] = {k: [] for k in self.pending}
        self.errors: dict[str, list[ErrorRow]] = {k: [] for k in self.pending}
        self.damaged: dict[str, int] = {k: 0 for k in self.pending}
        self.outcomes: dict[str, UnitOutcome] = {}

    def add(self, table: pa.Table) -> None:
        """Rows of any units. A clip seen before (a task Ray ran again after its worker died) is ignored."""
        clip_ids = table["clip_id"].to_pylist()
        keys = [self.unit_of[c] for c in clip_ids]
        for key in dict.fromkeys(keys):
            pending, taken, fresh = self.pending.get(key, set()), set(), []
            for k, c in zip(keys, clip_ids):
                fresh.append(k == key and c in pending and c not in taken)
                taken.add(c)
            if any(fresh):
                self._add_unit_rows(key, table.filter(pa.array(fresh)))

    def _add_unit_rows(self, key: str, part: pa.Table) -> None:
        target, pending = self.targets[key], self.pending[key]
        good = part.filter(pc.is_null(part["error_stage"]))
        self.rows[key].append(good)
        pending.difference_update(good["clip_id"].to_pylist())
        if RESULT_DAMAGE_FIELD.name in good.column_names:
            self.damaged[key] += pc.sum(pc.greater(good[RESULT_DAMAGE_FIELD.name], 0)).as_py() or 0
        for row in part.filter(pc.is_valid(part["error_stage"])).to_pylist():
            error = ErrorRow.from_result_row(row)
            self.errors[key].append(error)
            if is_damaged_clip(error):  # that clip alone had no decodable frame
                self.damaged[key] += 1
                pending.discard(row["clip_id"])
            elif row["error_stage"] == "decode":  # the unit's decoder stopped: every later clip is lost with it
                pending.difference_update(c for c, i in target.clip_index.items() if i >= row["clip_index"])
            else:
                pending.discard(row["clip_id"])
        if not pending:
            self._finish(target)

    def _finish(self, target: UnitTarget) -> None:
        table = pa.concat_tables(self.rows.pop(target.key)).sort_by("clip_index")
        for name, value in (("pipeline", self.pipeline), ("run_id", self.run_id)):
            table = table.append_column(name, pa.array([value] * table.num_rows, pa.string()))
        file = frames_file = None
        if table.num_rows:
            if self.frames:  # before the clip rows: a unit's clip file implies its frames file
                frames = frames_table(table, self.pipeline, self.run_id)
                frames_file = self.store.write_parquet(unit_frames_file(self.run_id, target.key), frames)
            file = self.store.write_parquet(target.file, table.select(self.schema.names).cast(self.schema))
        outcome = UnitOutcome(
            unit_key=target.key, video_id=target.video_id, file=file, clips=table.num_rows,
            sampled_frames=pc.sum(pc.list_value_length(table["frame_times_s"])).as_py() or 0,
            errors=[e.to_dict() for e in self.errors.pop(target.key)], damaged_clips=self.damaged.pop(target.key),
            frames_file=frames_file,
        )
        record_unit(self.store, self.run_id, outcome)
        self.outcomes[target.key] = outcome

    def unfinished(self) -> list[str]:
        return [k for k, p in self.pending.items() if p]
