"""The run's progress display: counts, rate and ETA, phase timings; plain lines where there is no terminal."""
from __future__ import annotations

import io
import time

from rich.console import Console

from vidbatch.progress import LineProgress, LiveProgress, RunProgress


def test_counts_rate_eta_and_phase_timings():
    p = RunProgress()
    p.phase("list")
    p.phase("probe", total=2)
    p.probed_video()
    p.probed_video()
    p.phase("stream", total=4)
    p.expect_clips(40)
    p.clips_arrived(10, units_done=1)
    time.sleep(0.05)
    p.clips_arrived(10, units_done=2)
    s = p.snapshot()
    assert (s.probed, s.to_probe, s.units_done, s.units_total, s.clips_done, s.clips_total) == (2, 2, 2, 4, 20, 40)
    assert s.clips_per_s > 0 and s.eta_s == __import__("pytest").approx(20 / s.clips_per_s, rel=0.2)
    line = p.line()
    assert line.startswith("[0:00] decoding + inference: 2/2 videos probed, 2/4 units, 20/40 clips,") and "clips/s, ETA 0:0" in line
    p.done()
    assert set(p.stage_s) == {"list", "probe", "stream"} and p.stage_s["stream"] >= 0.05


def test_plain_lines_every_interval():
    stream = io.StringIO()
    p = LineProgress(stream, interval_s=0.05)
    p.phase("probe", total=3)
    time.sleep(0.3)
    p.done()
    lines = stream.getvalue().splitlines()
    assert len(lines) >= 3 and all(line.startswith("vidbatch: [0:00] probing videos: 0/3 videos probed") for line in lines)
    time.sleep(0.15)
    assert stream.getvalue().splitlines() == lines  # stopped


def test_live_display_renders_the_counts():
    p = LiveProgress(Console(file=io.StringIO(), force_terminal=True, width=100))
    p.phase("stream", total=2)
    p.expect_clips(8)
    p.clips_arrived(4, units_done=1)
    render = Console(file=io.StringIO(), width=100, color_system=None)
    with render.capture() as captured:
        render.print(p._render())
    p.done()
    out = captured.get()
    assert "decoding + inference" in out and "units done" in out and "1/2" in out
    assert "clips inferred" in out and "4/8" in out
