"""What a run reports while it goes: the driver's phases and counts (videos probed, work units done, clips
inferred), their rate and an ETA, and how long each phase took (recorded in the run manifest as `stage_s`).

`RunProgress` only counts and times (the Python API's default: nothing is shown); `LiveProgress` draws one live
rich display on a terminal; `LineProgress` prints one plain line every few seconds where there is no terminal
(a log file, `ray job logs`). The pipeline calls the same few methods on any of them from its driver loop.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

PHASE_TITLES = {
    "list": "listing inputs",
    "ray": "starting Ray",
    "probe": "probing videos",
    "shots": "detecting shots",
    "stream": "decoding + inference",
}


@dataclass(frozen=True)
class Snapshot:
    phase: str
    elapsed_s: float
    probed: int
    to_probe: int
    units_done: int
    units_total: int
    clips_done: int
    clips_total: int
    clips_per_s: float | None  # since the first clip arrived
    eta_s: float | None


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


class RunProgress:
    """Counts and phase timings of one run; shows nothing. `stage_s` fills in as phases end (seconds per phase,
    plus whatever the pipeline adds, e.g. Ray Data's task time per operator)."""

    def __init__(self) -> None:
        self.stage_s: dict[str, float] = {}
        self.started = time.monotonic()
        self._phase, self._phase_started = "", self.started
        self.probed = self.to_probe = 0
        self.units_done = self.units_total = 0
        self.clips_done = self.clips_total = 0
        self._first_clip_at: float | None = None

    # --- called by the pipeline -------------------------------------------------------------------------------
    def phase(self, name: str, total: int = 0) -> None:
        """Start a phase (ending the one before); total: videos to probe, or work units to decode."""
        self.end_phase()
        self._phase, self._phase_started = name, time.monotonic()
        if name == "probe":
            self.to_probe, self.probed = total, 0
        elif name == "stream":
            self.units_total, self.units_done = total, 0

    def probed_video(self) -> None:
        self.probed += 1

    def expect_clips(self, clips: int) -> None:
        self.clips_total += clips

    def clips_arrived(self, clips: int, units_done: int) -> None:
        if self._first_clip_at is None:
            self._first_clip_at = time.monotonic()
        self.clips_done += clips
        self.units_done = units_done

    def end_phase(self) -> None:
        if self._phase:
            self.stage_s[self._phase] = round(self.stage_s.get(self._phase, 0.0) + time.monotonic() - self._phase_started, 3)
        self._phase = ""

    def done(self) -> None:
        """The run is over (or failed): record the open phase and stop any display."""
        self.end_phase()

    # --- read by the displays ---------------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        now = time.monotonic()
        rate = eta = None
        if self._first_clip_at is not None and now > self._first_clip_at and self.clips_done:
            rate = self.clips_done / (now - self._first_clip_at)
            eta = max(0.0, self.clips_total - self.clips_done) / rate
        return Snapshot(
            self._phase, now - self.started, self.probed, self.to_probe, self.units_done, self.units_total,
            self.clips_done, self.clips_total, rate, eta,
        )

    def line(self) -> str:
        """One plain line: `[0:42] decoding + inference: 4/4 videos probed, 3/10 units, 120/400 clips, 12.3 clips/s, ETA 0:22`."""
        s = self.snapshot()
        parts = []
        if s.to_probe:
            parts.append(f"{s.probed}/{s.to_probe} videos probed")
        if s.units_total:
            parts += [f"{s.units_done}/{s.units_total} units", f"{s.clips_done}/{s.clips_total} clips"]
        if s.clips_per_s is not None:
            parts.append(f"{s.clips_per_s:.1f} clips/s")
        if s.eta_s is not None:
            parts.append(f"ETA {_duration(s.eta_s)}")
        title = PHASE_TITLES.get(s.phase, s.phase or "finishing")
        return f"[{_duration(s.elapsed_s)}] {title}" + (f": {', '.join(parts)}" if parts else "")


class LineProgress(RunProgress):
    """A plain line every interval_s seconds on `stream` (no terminal: logs, `ray job logs`)."""

    def __init__(self, stream: IO[str], interval_s: float = 10.0) -> None:
        super().__init__()
        self.stream, self.interval_s = stream, interval_s
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick, name="vidbatch-progress", daemon=True)
        self._ticker.start()

    def _tick(self) -> None:
        while not self._stop.wait(self.interval_s):
            print(f"vidbatch: {self.line()}", file=self.stream, flush=True)

    def done(self) -> None:
        super().done()
        self._stop.set()
        self._ticker.join(timeout=5)


class LiveProgress(RunProgress):
    """One live rich display on a terminal: the phase, a bar per count, clips/s and the ETA; it disappears when the
    run ends (the summary follows)."""

    def __init__(self, console: Console) -> None:
        from rich.live import Live

        super().__init__()
        self._live = Live(console=console, get_renderable=self._render, refresh_per_second=4, transient=True,
                          redirect_stdout=False, redirect_stderr=False)
        self._live.start()

    def _render(self):
        from rich.progress_bar import ProgressBar
        from rich.table import Table

        s = self.snapshot()
        grid = Table.grid(padding=(0, 1))
        grid.add_row(f"[bold]vidbatch[/] {PHASE_TITLES.get(s.phase, s.phase or 'finishing')}", f"{_duration(s.elapsed_s)}")
        rows = []
        if s.to_probe:
            rows.append(("videos probed", s.probed, s.to_probe, ""))
        if s.units_total:
            rate = f"{s.clips_per_s:.1f} clips/s" if s.clips_per_s is not None else ""
            eta = f"ETA {_duration(s.eta_s)}" if s.eta_s is not None else ""
            rows += [("units done", s.units_done, s.units_total, ""), ("clips inferred", s.clips_done, s.clips_total, f"{rate}  {eta}".strip())]
        bars = Table.grid(padding=(0, 1))
        for name, done, total, extra in rows:
            bars.add_row(f"  {name}", ProgressBar(total=max(total, 1), completed=done, width=30), f"{done}/{total}", extra)
        outer = Table.grid()
        outer.add_row(grid)
        if rows:
            outer.add_row(bars)
        return outer

    def done(self) -> None:
        super().done()
        self._live.stop()
