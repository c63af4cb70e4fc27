"""The driver's end of the clip stream: rows gathered per work unit, each finished unit written and marked at once."""
from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from vidbatch.core.errors import ErrorRow, is_damaged_clip
from vidbatch.core.schema import RESULT_DAMAGE_FIELD
from vidbatch.core.storage import OutputStore
from vidbatch.store.commits import UnitOutcome, record_unit, unit_file, unit_frames_file
from vidbatch.store.plans import VideoPlan, unit_key
from vidbatch.store.tables import frames_table


@dataclass(frozen=True)
class UnitTarget:
    key: str
    video_id: str
    file: str  # the unit's staged clip rows, relative to the output root
    clip_indexes: range  # the clips the unit must account for


class UnitSink:
    """Driver side of the stream: rows gathered per work unit; a finished unit is written and marked at once,
    so a killed run loses at most the units in flight. It holds rows and pending clips only of the units in flight:
    a row's unit is found from its video's VideoPlan (the unit whose clip range holds the row's clip_index)."""

    def __init__(
        self, store: OutputStore, run_id: str, pipeline: str, schema: pa.Schema, plans: list[VideoPlan],
        staged: set[str], expected: int, frames: bool = False,
    ):
        """staged: units a killed attempt of this run already finished; they are neither expected nor written.
        expected: how many units the stream must finish. frames: the rows carry `frame_embeddings`; each unit's
        frames/ rows are staged next to its clip rows."""
        self.store, self.run_id, self.pipeline, self.schema = store, run_id, pipeline, schema
        self.frames = frames
        self.plans = {p.video_id: p for p in plans}
        self.staged, self.expected = staged, expected
        self.targets: dict[str, UnitTarget] = {}  # the units in flight
        self.pending: dict[str, set[int]] = {}
        self.rows: dict[str, list[pa.Table]] = {}
        self.errors: dict[str, list[ErrorRow]] = {}
        self.damaged: dict[str, int] = {}
        self.outcomes: dict[str, UnitOutcome] = {}

    def _target(self, video_id: str, clip_index: int) -> UnitTarget | None:
        """The unit of a row, None when it is done (staged or finished): a clip seen again is ignored."""
        plan = self.plans[video_id]
        unit_index = bisect_right(plan.unit_starts, clip_index) - 1
        key = unit_key(plan.video.source.fingerprint, unit_index, self.pipeline)
        target = self.targets.get(key)
        if target is None:
            if key in self.staged or key in self.outcomes:
                return None
            target = self.targets[key] = UnitTarget(key, video_id, unit_file(self.run_id, key), plan.unit_range(unit_index))
            self.pending[key], self.rows[key], self.errors[key], self.damaged[key] = set(target.clip_indexes), [], [], 0
        return target

    def add(self, table: pa.Table) -> None:
        """Rows of any units. A clip seen before (a task Ray ran again after its worker died) is ignored."""
        indexes = table["clip_index"].to_pylist()
        targets = [self._target(v, c) for v, c in zip(table["video_id"].to_pylist(), indexes)]
        for target in dict.fromkeys(t for t in targets if t is not None):
            pending, taken, fresh = self.pending.get(target.key, set()), set(), []
            for t, c in zip(targets, indexes):
                fresh.append(t is target and c in pending and c not in taken)
                if t is target:
                    taken.add(c)
            if any(fresh):
                self._add_unit_rows(target, table.filter(pa.array(fresh)))

    def _add_unit_rows(self, target: UnitTarget, part: pa.Table) -> None:
        key = target.key
        pending = self.pending[key]
        good = part.filter(pc.is_null(part["error_stage"]))
        self.rows[key].append(good)
        pending.difference_update(good["clip_index"].to_pylist())
        if RESULT_DAMAGE_FIELD.name in good.column_names:
            self.damaged[key] += pc.sum(pc.greater(good[RESULT_DAMAGE_FIELD.name], 0)).as_py() or 0
        for row in part.filter(pc.is_valid(part["error_stage"])).to_pylist():
            error = ErrorRow.from_result_row(row)
            self.errors[key].append(error)
            if is_damaged_clip(error):  # that clip alone had no decodable frame
                self.damaged[key] += 1
                pending.discard(row["clip_index"])
            elif row["error_stage"] == "decode":  # the unit's decoder stopped: every later clip is lost with it
                pending.difference_update(range(row["clip_index"], target.clip_indexes.stop))
            else:
                pending.discard(row["clip_index"])
        if not pending:
            self._finish(target)

    def _finish(self, target: UnitTarget) -> None:
        del self.targets[target.key], self.pending[target.key]
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

    def unfinished(self) -> int:
        """Expected units that have not finished (in flight, or never heard of)."""
        return self.expected - len(self.outcomes)
