"""Peak memory of shot detection for a long video against a short one (issue 13, P5 for `clip_mode: shots`).

    .venv/bin/python benchmarks/shot_memory.py [--long-seconds 600] [--short-seconds 10] [--detector transnetv2]

Encodes two 1280x720 25-fps H.264 files (textured panning shots with hard cuts, as shot_detection.py) and runs
each, in a fresh process, through the Ray-free shot stages the pipeline's Ray tasks and actors run: the decode
stage's rows one at a time into the model actor (`ShotModelActor.predict_row`), then `video_results` on the
rows, as the driver stitches them. The process's peak RSS (ru_maxrss) covers decode task, model and driver side
at once, so a whole-video buffer anywhere shows. Goal: the long video's peak <= 1.5x the short one's.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))


def run_one(uri: str, detector: str) -> None:
    import torch

    from vidbatch.config import ShotsConfig
    from vidbatch.shots.stages import ShotDecodeStage, ShotModelActor, video_results

    cfg = ShotsConfig(detector=detector, device="cpu", num_cpus=torch.get_num_threads())
    t = time.perf_counter()
    actor = ShotModelActor(cfg) if detector == "transnetv2" else None
    rows = []
    for row in ShotDecodeStage(cfg)({"video_json": json.dumps({"uri": uri, "video_id": "v"})}):
        rows.append(actor.predict_row(row) if actor else row)
    (result,) = video_results(rows, cfg)
    shots = json.loads(result["shots_json"])
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"peak_rss_mib": rss, "shots": len(shots), "rows": len(rows), "seconds": time.perf_counter() - t}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--long-seconds", type=float, default=600.0)
    ap.add_argument("--short-seconds", type=float, default=10.0)
    ap.add_argument("--detector", default="transnetv2", choices=["transnetv2", "content"])
    ap.add_argument("--one", help=argparse.SUPPRESS)  # child mode: measure this file
    args = ap.parse_args()
    if args.one:
        run_one(args.one, args.detector)
        return

    from shot_detection import cut_frames, make_cut_video

    results = {}
    for seconds in (args.short_seconds, args.long_seconds):
        n = round(seconds * 25)
        path = Path(tempfile.gettempdir()) / f"vidbatch_shots_720p_ultrafast_{seconds:g}s_25fps.mp4"
        if not path.exists():  # preset ultrafast: a 10-minute file encodes in minutes, not tens of minutes
            t = time.perf_counter()
            make_cut_video(path, n, 25, 1280, 720, cut_frames(n, 25), preset="ultrafast")
            print(f"encoded {path} in {time.perf_counter() - t:.0f}s")
        out = subprocess.run([sys.executable, __file__, "--one", str(path), "--detector", args.detector],
                             capture_output=True, text=True, check=True)
        results[seconds] = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{seconds:g}s ({n} frames): {results[seconds]}")
    ratio = results[args.long_seconds]["peak_rss_mib"] / results[args.short_seconds]["peak_rss_mib"]
    met = "MET" if ratio <= 1.5 else "NOT MET"
    print(f"goal: shots ({args.detector}) peak RSS for {args.long_seconds:g}s <= 1.5x that for "
          f"{args.short_seconds:g}s ({ratio:.2f}x) -> {met}")


if __name__ == "__main__":
    main()
