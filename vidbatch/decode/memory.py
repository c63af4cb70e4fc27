"""What one decode task needs in memory, from its work unit: the figure Ray reserves for it (decode.memory_mb: auto).

A fixed reservation either wastes a node (a small unit reserved like a big one) or lets a big unit (many samples,
a large canvas, a 4K source) outgrow it. The parts, each an upper bound:

- the worker: a Ray Data worker that has imported the decode stage (214 MiB RSS measured on Ray 2.60, rounded up);
- the decoder: FFmpeg's reference frames (a DPB of up to 16 frames in H.264/HEVC) plus a frame per thread, in
  YUV 4:2:0 at the source's size, and the RGB frame libswscale scales into;
- the frames in flight: the clip being gathered (its kept frames, their stack, its padded batch), every other clip
  the decoder holds while clips overlap, and the task's output block. Ray Data gathers a generator's batches into a
  block of up to `target_max_block_size` before it leaves the task, then concatenates it: twice the block.
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass

from vidbatch.plan.clips import WorkUnit
from vidbatch.plan.frame_plan import FrameSpec

MiB = 2**20
WORKER_BYTES = 256 * MiB
REFERENCE_FRAMES = 16  # the H.264/HEVC ceiling on the decoded picture buffer
UNKNOWN_SOURCE = (1920, 1080)  # a unit planned without the source size (staged by an older version)


@dataclass(frozen=True)
class UnitShape:
    """What a unit's budget depends on, without its clips: what the driver keeps of a staged plan's units."""

    clips: int
    overlapping: int  # the most clips open at once (overlapping_clips)
    width: int  # the source's size; 0: unknown
    height: int

    @classmethod
    def of(cls, unit: WorkUnit) -> UnitShape:
        return cls(len(unit.clips), overlapping_clips(unit), unit.width, unit.height)

    def widest(self, other: UnitShape) -> UnitShape:
        """A shape whose budget bounds both (the budget grows with every field)."""
        return UnitShape(
            max(self.clips, other.clips), max(self.overlapping, other.overlapping), max(self.width, other.width),
            max(self.height, other.height),
        )


@dataclass(frozen=True)
class DecodeBudget:
    """Bytes one decode task may need, by part."""

    worker: int
    decoder: int
    frames: int

    @property
    def total(self) -> int:
        return self.worker + self.decoder + self.frames

    @property
    def mib(self) -> int:
        return -(-self.total // MiB)


def clip_bytes(slots: int, spec: FrameSpec) -> int:
    """One clip's frames as they travel: `slots` padded frames of the crop x crop RGB canvas, uint8."""
    return slots * spec.crop * spec.crop * 3


def overlapping_clips(unit: WorkUnit) -> int:
    """The most clips of the unit whose time ranges overlap (1 for back-to-back windows): the decoder holds the
    kept frames of each until its last sample is decoded."""
    ends: list[float] = []
    most = 0
    for c in sorted(unit.clips, key=lambda c: c.start_s):
        while ends and ends[0] <= c.start_s:
            heapq.heappop(ends)
        heapq.heappush(ends, c.end_s)
        most = max(most, len(ends))
    return most


def decode_budget(
    unit: UnitShape, slots: int, spec: FrameSpec, threads: int, block_bytes: int, thumbnail_width: int | None = None
) -> DecodeBudget:
    """The budget of decoding a unit of this shape into batches of `slots` frames each (the job's K plus the tasks' own stacks).

    threads: FFmpeg threads per task (0: FFmpeg's choice, counted as 16). block_bytes: the most bytes of output
    the task holds before handing a block on (Ray Data's target_max_block_size).
    """
    width, height = (unit.width, unit.height) if unit.width and unit.height else UNKNOWN_SOURCE
    yuv = width * height * 3 // 2
    scaled_w, scaled_h = spec.scaled_size(width, height)
    rgb = scaled_w * scaled_h * 3
    thumb = 0
    if thumbnail_width:
        thumb = thumbnail_width * max(1, round(height * thumbnail_width / width)) * 3
    decoder = yuv * (REFERENCE_FRAMES + (threads or 16) + 1) + 2 * rgb + thumb
    clip = clip_bytes(slots, spec)
    output = min(clip * unit.clips, block_bytes + clip)
    # the kept frames of every clip open at once (the one being gathered among them), its stack and its slot layout
    gathering = clip * (2 + unit.overlapping)
    return DecodeBudget(WORKER_BYTES, decoder, 2 * output + gathering)
