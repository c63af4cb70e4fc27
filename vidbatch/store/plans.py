"""Work-unit plans staged beside the run, so that the driver never holds an archive's clips.

The probe tasks plan each video's clips and work units and write them to `_staging/<run_id>/plans/<name>.jsonl`
(one WorkUnit per line, a video's units on consecutive lines). The driver keeps a VideoPlan per video: what the
videos table and the counts need, where its units are, and the first clip index of each unit (from which the sink
finds a result row's unit and its key). Decode tasks read their slice of units from the plan files themselves.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from vidbatch.config import RetryConfig
from vidbatch.core import retry
from vidbatch.core.errors import ErrorRow
from vidbatch.core.storage import OutputStore
from vidbatch.decode.memory import UnitShape
from vidbatch.plan.listing import VideoSource
from vidbatch.plan.prepare import PreparedVideo, PrepareStage
from vidbatch.plan.probe import VideoInfo
from vidbatch.store.commits import STAGING


def unit_key(fingerprint: str, unit_index: int, pipeline: str) -> str:
    """A work unit's key, from the video's content fingerprint, the unit and the pipeline: a resumed run finds the
    units it staged before by it."""
    return hashlib.sha1(f"{fingerprint}|{unit_index}|{pipeline}".encode()).hexdigest()[:20]


@dataclass(frozen=True)
class VideoPlan:
    """What the driver keeps of a probed video: no clips, only where its units are staged and where each begins."""

    video: PreparedVideo  # its source, probe result and error; units=()
    file: str | None  # the plan file holding its units (relative to the output root); None: no units
    line: int  # the line of its first unit in that file
    unit_starts: tuple[int, ...]  # clip_index of each unit's first clip (clip indexes run on across units)
    clips: int  # clips planned
    shape: UnitShape | None = None  # bounds every one of its units' decode budget (decode.memory_mb: auto)

    @property
    def video_id(self) -> str:
        return self.video.source.video_id

    def unit_range(self, unit_index: int) -> range:
        """The clip indexes of one unit."""
        stop = self.unit_starts[unit_index + 1] if unit_index + 1 < len(self.unit_starts) else self.clips
        return range(self.unit_starts[unit_index], stop)

    def to_json(self) -> str:
        v = self.video
        return json.dumps({
            "source": v.source.to_dict(), "info": v.info.to_dict() if v.info else None,
            "error": v.error.to_dict() if v.error else None, "file": self.file, "line": self.line,
            "unit_starts": list(self.unit_starts), "clips": self.clips,
            "shape": dataclasses.asdict(self.shape) if self.shape else None,
        })

    @classmethod
    def from_json(cls, text: str) -> VideoPlan:
        d = json.loads(text)
        video = PreparedVideo(
            VideoSource(**d["source"]), VideoInfo(**d["info"]) if d["info"] else None, (),
            ErrorRow(**d["error"]) if d["error"] else None,
        )
        shape = UnitShape(**d["shape"]) if d["shape"] else None
        return cls(video, d["file"], d["line"], tuple(d["unit_starts"]), d["clips"], shape)


def stage_plans(store: OutputStore, run_id: str, videos: list[PreparedVideo]) -> list[VideoPlan]:
    """Write the videos' units to one plan file; returns their VideoPlans. The file is named after the videos, so a
    probe task that Ray runs again rewrites the same file with the same lines."""
    name = hashlib.sha1("\n".join(v.source.uri for v in videos).encode()).hexdigest()[:20]
    file = f"{STAGING}/{run_id}/plans/{name}.jsonl"
    lines: list[str] = []
    plans = []
    for v in videos:
        starts = tuple(u.clips[0].clip_index for u in v.units)
        clips = sum(len(u.clips) for u in v.units)
        shape = functools.reduce(UnitShape.widest, (UnitShape.of(u) for u in v.units)) if v.units else None
        plans.append(
            VideoPlan(PreparedVideo(v.source, v.info, (), v.error), file if v.units else None, len(lines), starts, clips, shape)
        )
        lines += (json.dumps(u.to_dict()) for u in v.units)
    if lines:
        store.write_bytes(file, ("\n".join(lines) + "\n").encode())
    return plans


@dataclass(frozen=True)
class PlanStage:
    """Probe tasks: a batch of `source_json` rows in, each video probed and planned, the batch's units staged in one
    plan file, `plan_json` rows (VideoPlan) out. stage_units False (clip_mode shots): the fixed-window units are not
    written, since the shots re-plan every video."""

    prepare: PrepareStage
    output: str
    run_id: str
    storage_options: dict[str, Any] | None = None
    retry: RetryConfig | None = None
    stage_units: bool = True

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        videos = [self.prepare.prepare(VideoSource(**json.loads(s))) for s in batch["source_json"]]
        if not self.stage_units:
            videos = [PreparedVideo(v.source, v.info, (), v.error) for v in videos]
        plans = stage_plans(OutputStore(self.output, self.storage_options, self.retry), self.run_id, videos)
        return {"plan_json": np.array([p.to_json() for p in plans], dtype=object)}


@dataclass(frozen=True)
class UnitSlices:
    """Decode tasks: a slice of a plan file (`file`, lines `start` to `stop`) in, its `unit_json` rows out."""

    output: str
    storage_options: dict[str, Any] | None = None
    retry: RetryConfig | None = None

    def __call__(self, row: dict[str, Any]) -> list[dict[str, str]]:
        store = OutputStore(self.output, self.storage_options, self.retry)
        text = retry.call(store.retry, store.fs.cat_file, store.path(row["file"])).decode()
        return [{"unit_json": line} for line in text.splitlines()[row["start"] : row["stop"]]]


@dataclass(frozen=True)
class Todo:
    """The staged units a run still has to decode, as slices of consecutive plan-file lines."""

    slices: list[dict[str, Any]]  # {"file", "start", "stop"}: UnitSlices rows
    units: int
    clips: int
    done: set[str]  # the staged units (of a killed attempt) that are units of these plans


def unit_slices(plans: list[VideoPlan], pipeline: str, staged: set[str], parts: int) -> Todo:
    """The units not staged yet, in about `parts` slices (several per CPU balance the load; one per unit would
    flood the scheduler on a large archive)."""
    runs: list[list[Any]] = []  # [file, start, stop] of consecutive lines to do
    units = clips = 0
    done = set()
    for p in plans:
        for i in range(len(p.unit_starts)):
            key = unit_key(p.video.source.fingerprint, i, pipeline)
            if key in staged:
                done.add(key)
                continue
            line = p.line + i
            if runs and runs[-1][0] == p.file and runs[-1][2] == line:
                runs[-1][2] += 1
            else:
                runs.append([p.file, line, line + 1])
            units += 1
            clips += len(p.unit_range(i))
    size = max(1, math.ceil(units / max(1, parts)))
    slices = [
        {"file": file, "start": s, "stop": min(s + size, stop)} for file, start, stop in runs for s in range(start, stop, size)
    ]
    return Todo(slices, units, clips, done)
