"""P5: peak memory of decode workers and of the driver for a 10-minute 720p video against a 10-second one.

    RAY_AUTH_MODE=disabled .venv/bin/python benchmarks/memory_per_video.py

Each line is one `vidbatch.run` over one video, decode only (`tasks: []`; the inference actors' memory does not
depend on the video's length), in a fresh Python process with a fresh embedded Ray (2 CPUs), so no worker process
and no driver carries a peak over from another line. Measured:

  driver peak   the driver process's VmHWM (the kernel's high-water mark of its resident set) when the run ends
  worker peak   the largest VmHWM of any Ray worker process (the raylet's `ray::` children), read from /proc every
                0.2 s while the run goes (VmHWM is kept by the kernel, so the polling only has to see each worker
                once before it exits); decode tasks, probe tasks and (clip_mode shots) shot-decode tasks
  reserved      what `decode.memory_mb: auto` reserves per decode task for the run's units (vidbatch/decode/memory.py)

Modes: `fixed` (2 s clips, 8 frames each) and `shots` (clip_mode shots, the `content` detector by default, which
runs inside the shot-decode tasks; `--detector transnetv2` adds a model actor). Videos are made once with PyAV
libx264 preset ultrafast (simple moving content) and cached in $TMPDIR/vidbatch_bench_videos.

Goals checked: long/short <= 1.5 for the worker peak and for the driver peak, per mode.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Self

os.environ.setdefault("RAY_AUTH_MODE", "disabled")

GOAL_RATIO = 1.5
MiB = 2**20


def make_video(path: Path, seconds: float, fps: int = 25, width: int = 1280, height: int = 720) -> None:
    """A colour gradient with a box moving across it and a scene change every 20 s (shot detection finds shots)."""
    import av
    import numpy as np

    yy, xx = np.mgrid[0:height, 0:width]
    scenes = [
        np.stack([(xx * 255 // width + 60 * k) % 256, (yy * 255 // height + 90 * k) % 256,
                  np.full_like(xx, 40 * k % 256)], axis=-1).astype(np.uint8)
        for k in range(4)
    ]
    tmp = path.with_suffix(".part.mp4")
    with av.open(str(tmp), mode="w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast"}
        for i in range(round(seconds * fps)):
            img = scenes[(i // (20 * fps)) % len(scenes)].copy()
            x = (i * 8) % (width - 120)
            img[300:420, x : x + 120] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    tmp.rename(path)


def ensure_video(seconds: float) -> Path:
    folder = Path(tempfile.gettempdir()) / "vidbatch_bench_videos" / "p5_720p25_ultrafast"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"v_{seconds:g}s.mp4"
    if not path.exists():
        t = time.perf_counter()
        make_video(path, seconds)
        print(f"  encoded {path} ({path.stat().st_size / MiB:.1f} MiB) in {time.perf_counter() - t:.1f}s", flush=True)
    return path


def _status(pid: int | str, key: str) -> int:
    """A /proc/<pid>/status figure in bytes (0 once the process is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key + ":"))
    except (OSError, StopIteration):
        return 0


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def _title(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().split(b"\0")[0].decode(errors="replace")
    except OSError:
        return ""


class WorkerPeaks:
    """Polls the Ray worker processes under this driver's raylet: each one's VmHWM and the busiest title seen."""

    def __init__(self) -> None:
        self.peaks: dict[int, int] = {}
        self.titles: dict[int, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.is_set():
            raylets = [p for p in _children(os.getpid()) if "raylet" in _title(p)]
            for raylet in raylets:
                for pid in _children(raylet):
                    title = _title(pid)
                    if not title.startswith("ray::"):
                        continue
                    self.peaks[pid] = max(self.peaks.get(pid, 0), _status(pid, "VmHWM"))
                    if title != "ray::IDLE":
                        self.titles[pid] = title
            self._stop.wait(0.2)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def measure(mode: str, video: Path, detector: str) -> dict[str, Any]:
    """One run in this (fresh) process; the figures as a dict."""
    import ray

    import vidbatch
    from vidbatch.config import JobConfig
    from vidbatch.decode.memory import UnitShape, decode_budget
    from vidbatch.infer.tasks import frame_spec_for
    from vidbatch.plan.clips import plan_clips, plan_work_units
    from vidbatch.plan.probe import probe_video

    out = tempfile.mkdtemp(prefix="p5-")
    config = {
        "inputs": [str(video)], "output": out, "tasks": [], "clips": {"clip_seconds": 2.0},
        "sampling": {"frames_per_clip": 8}, "ray": {"progress_bars": False},
    }
    if mode == "shots":
        config["clips"] = {"clip_mode": "shots"}
        config["shots"] = {"detector": detector}
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    t = time.perf_counter()
    with WorkerPeaks() as workers:
        summary = vidbatch.run(config, verbose=False)
    wall = time.perf_counter() - t
    cfg = JobConfig.model_validate(config)
    info = probe_video(str(video))
    # the fixed clips' units (in shots mode the clips follow the shots, at most max_clip_seconds each: about as many)
    units = plan_work_units(str(video), "v", info, plan_clips(info, "fp", cfg.clips, cfg.sampling), cfg.decode.unit_seconds)
    block = ray.data.DataContext.get_current().target_max_block_size
    reserved = max(decode_budget(UnitShape.of(u), 8, frame_spec_for([]), cfg.decode.threads, block).total for u in units)
    busiest = max(workers.peaks, key=workers.peaks.get) if workers.peaks else None
    return {
        "mode": mode, "video": str(video), "source_seconds": summary.counts.source_seconds, "clips": summary.counts.clips,
        "status": summary.status, "wall_s": round(wall, 1), "driver_peak_mib": _status("self", "VmHWM") / MiB,
        "worker_peak_mib": workers.peaks[busiest] / MiB if busiest else 0.0,
        "busiest_worker": workers.titles.get(busiest, "") if busiest else "", "workers": len(workers.peaks),
        "reserved_mib": reserved / MiB,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--short-seconds", type=float, default=10.0)
    ap.add_argument("--long-seconds", type=float, default=600.0)
    ap.add_argument("--modes", default="fixed,shots", help="comma-separated: fixed, shots (default both)")
    ap.add_argument("--detector", default="content", help="shot detector for mode shots (default content)")
    ap.add_argument("--json", dest="json_path", help="save the results as JSON here")
    ap.add_argument("--measure", nargs=2, metavar=("MODE", "VIDEO"), help=argparse.SUPPRESS)  # one line, in a child
    args = ap.parse_args(argv)
    if args.measure:
        print("RESULT " + json.dumps(measure(args.measure[0], Path(args.measure[1]), args.detector)), flush=True)
        return 0

    short, long = ensure_video(args.short_seconds), ensure_video(args.long_seconds)
    rows: list[dict[str, Any]] = []
    for mode in args.modes.split(","):
        for video in (short, long):
            child = subprocess.run(
                [sys.executable, __file__, "--measure", mode, str(video), "--detector", args.detector],
                capture_output=True, text=True, check=False,
            )
            line = next((ln for ln in child.stdout.splitlines() if ln.startswith("RESULT ")), None)
            if line is None:
                print(child.stdout[-2000:], child.stderr[-4000:])
                return 1
            rows.append(json.loads(line[len("RESULT "):]))
            r = rows[-1]
            print(f"{mode:6} {r['source_seconds']:7.1f} s video  {r['clips']:4} clips  {r['status']:9} "
                  f"driver {r['driver_peak_mib']:6.1f} MiB  worker {r['worker_peak_mib']:6.1f} MiB "
                  f"({r['busiest_worker']}, {r['workers']} workers)  reserved {r['reserved_mib']:.0f} MiB  "
                  f"wall {r['wall_s']} s", flush=True)
    met_all = True
    for mode in args.modes.split(","):
        s, lg = (r for r in rows if r["mode"] == mode)
        for what in ("worker_peak_mib", "driver_peak_mib"):
            ratio = lg[what] / s[what]
            met = ratio <= GOAL_RATIO
            met_all &= met
            print(f"goal: {mode} {what.split('_')[0]} peak {args.long_seconds:g} s / {args.short_seconds:g} s video "
                  f"= {ratio:.2f}x <= {GOAL_RATIO}x -> {'MET' if met else 'NOT MET'}")
        within = lg["worker_peak_mib"] <= lg["reserved_mib"]
        print(f"       {mode} long video: worker peak {lg['worker_peak_mib']:.0f} MiB "
              f"{'within' if within else 'ABOVE'} the {lg['reserved_mib']:.0f} MiB reserved per decode task")
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(rows, indent=2))
    return 0 if met_all else 1


if __name__ == "__main__":
    sys.exit(main())
