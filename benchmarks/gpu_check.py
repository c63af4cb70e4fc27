"""Checks of vidbatch's CUDA paths on a GPU, without Ray: the stages are plain callables, so this drives them
directly. Run it through `benchmarks/gpu_check.sh`, which installs the wheels the GPU machine lacks first.

Phases (each prints a table; all land in one JSON file):
  env         torch, CUDA build, device, driver
  classify    MobileNetV2 in fp32 / bf16 / fp16 at 64 and 512 frames per actor call, against fp32 on the CPU:
              frames/s, peak GPU memory, GPU utilisation, agreement with the CPU (embedding cosine, top-1)
  copies      host to GPU: pinned + non-blocking (vidbatch's to_device) against pageable copies
  oom         a forced out of memory (memory capped): the forward batch halves, the size that fit is kept,
              results equal an uncapped run; at the smallest forward it raises instead of writing error rows
  detect      box dtype and step of a torchvision detector under bf16 autocast, and the detect task under
              precision bf16 (runs fp32: boxes equal the fp32 run)
  isolation   a process whose GPUs are hidden (CUDA_VISIBLE_DEVICES="") but asks for cuda fails with the reason
  transnetv2  TransNetV2 at 1-256 windows per forward: frames/s, peak memory, predictions against batch 1, and
              the CPU at batch 1
  tests       the Ray-free CUDA tests (tests/test_cuda.py) under pytest: each test's outcome

Every run also renders its tables as a dated Markdown section and appends it to benchmarks/README.md (`--readme`),
and writes the same section beside the JSON, which is what comes back from a remote GPU machine.

Random weights throughout (seeded, identical on both devices): speed and agreement do not need trained weights,
and nothing is downloaded. `--device cpu` runs the GPU lines on the CPU (except oom): a smoke test of the script.
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
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TARGET = "cuda"  # the device under test; --device cpu for a smoke test


def on_gpu() -> bool:
    return TARGET == "cuda"


class Utilisation:
    """GPU utilisation sampled every 100 ms while a phase runs (NVML through torch.cuda.utilization)."""

    def __init__(self) -> None:
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.1):
            try:
                self.samples.append(int(torch.cuda.utilization()))
            except Exception:  # noqa: BLE001 - no NVML here: utilisation stays unknown
                return

    def __enter__(self) -> Utilisation:
        if on_gpu():
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    @property
    def mean(self) -> float | None:
        return float(np.mean(self.samples)) if self.samples else None


@contextmanager
def measured(record: dict[str, Any]) -> Iterator[None]:
    """Wall time, peak GPU memory and mean GPU utilisation of the block, into record."""
    if on_gpu():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    with Utilisation() as util:
        start = time.perf_counter()
        yield
        if on_gpu():
            torch.cuda.synchronize()
        record["seconds"] = time.perf_counter() - start
    record["gpu_util_pct"] = util.mean
    record["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2**20 if on_gpu() else None


def table_lines(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return ["(nothing ran)"]
    keys = list(dict.fromkeys(k for r in rows for k in r))
    cells = [[_fmt(r.get(k)) for k in keys] for r in rows]
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
    rows_out = [[k.ljust(w) for k, w in zip(keys, widths)]] + [[v.ljust(w) for v, w in zip(c, widths)] for c in cells]
    return ["  ".join(r).rstrip() for r in rows_out]


def table(title: str, rows: list[dict[str, Any]]) -> None:
    print(f"\n== {title}")
    print("\n".join(table_lines(rows)))


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "-" if v is None else str(v)


def smooth_frames(n: int, side: int, seed: int = 0) -> np.ndarray:
    """(n, side, side, 3) uint8 with image-like low-frequency structure (noise would sit on class-score ties);
    made 256 at a time, so the float intermediate stays small."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, side, side, 3), np.uint8)
    for i in range(0, n, 256):
        small = torch.from_numpy(rng.integers(0, 256, (min(256, n - i), 3, 8, 8), dtype=np.uint8)).float()
        big = torch.nn.functional.interpolate(small, size=(side, side), mode="bicubic", align_corners=False)
        out[i : i + len(small)] = big.clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return out


def phase_env(quick: bool) -> list[dict[str, Any]]:
    from vidbatch.core.devices import driver_version

    row = {"torch": torch.__version__, "cuda_build": torch.version.cuda, "driver": driver_version(),
           "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES")}
    if on_gpu():
        props = torch.cuda.get_device_properties(0)
        row |= {"device": props.name, "capability": f"{props.major}.{props.minor}", "memory_gib": props.total_memory / 2**30}
    return [row]


def _classify_actor(device: str, precision: str, batch_size: int = 64, frames_per_call: int | None = None):
    from vidbatch.config import InferenceConfig, TaskConfig
    from vidbatch.infer.actor import ClipInferenceActor

    torch.manual_seed(0)  # the same random MobileNetV2 on every device
    cfg = InferenceConfig(device=device, precision=precision, batch_size=batch_size, frames_per_call=frames_per_call)
    return ClipInferenceActor([TaskConfig(model="mobilenet_v2", weights=None)], cfg)


def _clip_batches(
    frames: np.ndarray, per_clip: int, clips_per_call: int, spec: Any = None, source_side: int = 0
) -> list[dict[str, np.ndarray]]:
    """Frames batches as the decode stage hands them to the actor: clips of 7 videos, clips_per_call per call."""
    from vidbatch.decode.decode_stage import frames_batch
    from vidbatch.plan.frame_plan import FrameSpec

    spec = spec or FrameSpec(resize_short=256, crop=224)
    rows = [
        {"video_id": f"v{i % 7}", "video_uri": f"v{i % 7}.mp4", "clip_id": f"c{i}", "clip_index": i, "start_s": float(i),
         "end_s": i + 1.0, "frames": frames[i * per_clip : (i + 1) * per_clip], "source_wh": (source_side, source_side),
         "frame_times_s": [i + k / per_clip for k in range(per_clip)]}
        for i in range(len(frames) // per_clip)
    ]
    return [frames_batch(rows[i : i + clips_per_call], per_clip, spec) for i in range(0, len(rows), clips_per_call)]


def _run_calls(actor: Any, batches: list[dict[str, np.ndarray]]) -> list[dict[str, Any]]:
    return [r for b in batches for r in actor(b).to_pylist()]


def _agreement(rows: list[dict[str, Any]], reference: list[dict[str, Any]]) -> dict[str, float]:
    cos = [float(np.dot(a["embedding"], b["embedding"])) for a, b in zip(rows, reference)]
    top1 = np.mean([a["labels"][0] == b["labels"][0] for a, b in zip(rows, reference)])
    return {"min_embedding_cos_vs_cpu": min(cos), "top1_agreement_vs_cpu": float(top1)}


def phase_classify(quick: bool) -> list[dict[str, Any]]:
    per_clip = 8
    n_gpu_clips, n_cpu_clips = (16, 8) if quick else (2048, 64)
    frames = smooth_frames(max(n_gpu_clips, n_cpu_clips) * per_clip, 224)
    rows: list[dict[str, Any]] = []
    cpu = _classify_actor("cpu", "fp32", batch_size=16)
    cpu_batches = _clip_batches(frames[: n_cpu_clips * per_clip], per_clip, 64 // per_clip)
    _run_calls(cpu, cpu_batches[:1])  # warm-up
    record: dict[str, Any] = {"device": "cpu", "precision": "fp32", "frames_per_call": 64, "frames": n_cpu_clips * per_clip}
    with measured(record):
        reference = _run_calls(cpu, cpu_batches)
    record["frames_per_s"] = record["frames"] / record["seconds"]
    rows.append(record)
    for precision in ("fp32", "bf16", "fp16"):
        for call_frames in (64, 512):
            actor = _classify_actor(TARGET, precision, frames_per_call=call_frames)
            batches = _clip_batches(frames[: n_gpu_clips * per_clip], per_clip, call_frames // per_clip)
            _run_calls(actor, batches[:2])  # warm-up: cuDNN autotuning, allocator
            record = {"device": TARGET, "precision": precision, "frames_per_call": call_frames, "frames": n_gpu_clips * per_clip}
            with measured(record):
                out = _run_calls(actor, batches)
            record["frames_per_s"] = record["frames"] / record["seconds"]
            record["vs_cpu"] = record["frames_per_s"] / rows[0]["frames_per_s"]
            record |= _agreement(out[:n_cpu_clips], reference)
            rows.append(record)
            del actor
            torch.cuda.empty_cache()
    return rows


def phase_copies(quick: bool) -> list[dict[str, Any]]:
    from vidbatch.core.devices import to_device

    frames = smooth_frames(64 if quick else 512, 224)
    device = torch.device(TARGET)
    ways: dict[str, Callable[[], torch.Tensor]] = {
        "pinned+non_blocking (to_device)": lambda: to_device(frames, device),
        "pageable": lambda: torch.from_numpy(frames).to(device),
    }
    rows = []
    for name, copy in ways.items():
        copy()  # warm-up
        record: dict[str, Any] = {"copy": name, "mib": frames.nbytes / 2**20, "repeats": 10}
        with measured(record):
            for _ in range(10):
                copy()
        record["gib_per_s"] = 10 * frames.nbytes / 2**30 / record["seconds"]
        rows.append(record)
    return rows


def phase_oom(quick: bool) -> list[dict[str, Any]]:
    if not on_gpu():
        return []  # a memory cap exists only for CUDA
    per_clip, n_clips = 8, (64 if quick else 512)
    frames = smooth_frames(n_clips * per_clip, 224, seed=1)
    batches = _clip_batches(frames, per_clip, n_clips)  # one call: every frame in one predict
    unforced = _run_calls(_classify_actor("cuda", "fp32", batch_size=64), batches)
    torch.cuda.empty_cache()
    cap_gib = 3.0
    torch.cuda.set_per_process_memory_fraction(cap_gib * 2**30 / torch.cuda.get_device_properties(0).total_memory)
    rows = []
    try:
        actor = _classify_actor("cuda", "fp32", batch_size=n_clips * per_clip)
        record: dict[str, Any] = {"case": f"batch {n_clips * per_clip} under a {cap_gib:g} GiB cap"}
        with measured(record):
            forced = _run_calls(actor, batches)
        again: dict[str, Any] = {}
        with measured(again):
            _run_calls(actor, batches)
        record |= {
            "working_batch": actor.working_batch.get(0), "second_call_s": again["seconds"],
            "max_score_diff": max(abs(a - b) for f, u in zip(forced, unforced) for a, b in zip(f["scores"], u["scores"])),
            "same_labels": all(f["labels"] == u["labels"] for f, u in zip(forced, unforced)),
        }
        rows.append(record)
        del actor
        torch.cuda.set_per_process_memory_fraction(1.0)
        actor = _classify_actor("cuda", "fp32", batch_size=per_clip)
        one_clip = _clip_batches(frames[:per_clip], per_clip, 1)
        torch.cuda.empty_cache()
        # 4 MiB above what the model holds: the clip's frames fit, no forward pass does, not even of one frame
        total = torch.cuda.get_device_properties(0).total_memory
        torch.cuda.set_per_process_memory_fraction((torch.cuda.memory_reserved() + 4 * 2**20) / total)
        outcome = "no error (unexpected)"
        try:
            _run_calls(actor, one_clip)
        except torch.OutOfMemoryError as e:
            outcome = f"raised {type(e).__name__}: systemic, the run would end (exit 1); working_batch {actor.working_batch}"
        rows.append({"case": "out of memory at batch 1", "outcome": outcome})
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
        torch.cuda.empty_cache()
    return rows


def _box_step(boxes: torch.Tensor) -> float:
    """Median gap between distinct box coordinates above 200 px: the coordinate resolution there."""
    values = np.unique(boxes.float().cpu().numpy().ravel())
    values = values[values > 200]
    return float(np.median(np.diff(values))) if len(values) > 1 else float("nan")


def phase_detect(quick: bool) -> list[dict[str, Any]]:
    import torchvision

    from vidbatch.config import InferenceConfig, TaskConfig
    from vidbatch.infer.actor import ClipInferenceActor
    from vidbatch.plan.frame_plan import FrameSpec

    torch.manual_seed(0)
    net = torchvision.models.get_model("fasterrcnn_mobilenet_v3_large_fpn", weights=None, weights_backbone=None,
                                       box_score_thresh=0.0).eval().to(TARGET)
    images = [torch.from_numpy(f).permute(2, 0, 1).float().to(TARGET) / 255 for f in smooth_frames(2 if quick else 4, 800, seed=2)]
    rows = []
    with torch.inference_mode():
        for name, ctx in [("fp32", torch.autocast(TARGET, enabled=False)), ("bf16 autocast", torch.autocast(TARGET, dtype=torch.bfloat16)),
                          ("fp16 autocast", torch.autocast(TARGET, dtype=torch.float16))]:
            with ctx:
                dets = net(images)
            boxes = torch.cat([d["boxes"] for d in dets])
            rows.append({"model run": name, "boxes_dtype": str(boxes.dtype).removeprefix("torch."),
                         "box_step_px_above_200": _box_step(boxes), "boxes": len(boxes)})
    del net
    frames = smooth_frames(2 * 4, 320, seed=3)
    batches = _clip_batches(frames, 4, 2, FrameSpec(320, 320, letterbox=True), source_side=320)
    task = TaskConfig(task="detect", model="ssdlite320_mobilenet_v3_large", weights=None, score_threshold=0.0)
    results = {}
    for precision in ("fp32", "bf16", "fp16"):
        torch.manual_seed(0)
        actor = ClipInferenceActor([task], InferenceConfig(device=TARGET, precision=precision))
        results[precision] = [r for b in batches for r in actor(b).to_pylist()]
    for precision in ("bf16", "fp16"):
        diffs = [abs(a[k] - b[k]) for ra, rb in zip(results[precision], results["fp32"])
                 for a, b in zip(ra["det_detections"], rb["det_detections"]) for k in ("x1", "y1", "x2", "y2")]
        rows.append({"model run": f"detect task, precision {precision}", "max_box_diff_vs_fp32_px": max(diffs, default=0.0)})
    return rows


def phase_isolation(quick: bool) -> list[dict[str, Any]]:
    code = (
        "from vidbatch.core.devices import pick_device\n"
        "print('auto ->', pick_device('auto'))\n"
        "try:\n    pick_device('cuda')\nexcept Exception as e:\n    print(type(e).__name__ + ':', e)\n"
    )
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    return [{"CUDA_VISIBLE_DEVICES": "''", "output": (result.stdout + result.stderr).strip()[-600:]}]


def phase_transnetv2(quick: bool) -> list[dict[str, Any]]:
    from vidbatch.shots.transnetv2_detector import TransNetV2Detector

    rng = np.random.default_rng(4)
    n_gpu, n_cpu = (1_000, 300) if quick else (13_000, 1_000)  # 13,000 frames: 260 windows, enough for batch 256
    frames = rng.integers(0, 256, (max(n_gpu, n_cpu), 27, 48, 3), dtype=np.uint8)
    rows = []
    cpu = TransNetV2Detector(batch_size=1, device="cpu")
    cpu.frame_predictions(frames[:100])  # warm-up
    record: dict[str, Any] = {"device": "cpu", "batch": 1, "frames": n_cpu}
    with measured(record):
        cpu.frame_predictions(frames[:n_cpu])
    record["frames_per_s"] = n_cpu / record["seconds"]
    rows.append(record)
    detector = TransNetV2Detector(batch_size=1, device=TARGET)
    reference = None
    for batch in (1, 2, 4, 8, 16, 32, 64, 128, 256)[: 3 if quick else None]:
        detector.batch_size = batch
        detector.frame_predictions(frames[: 50 * batch + 50])  # warm-up at this shape
        record = {"device": TARGET, "batch": batch, "frames": n_gpu}
        with measured(record):
            predictions = detector.frame_predictions(frames[:n_gpu])
        reference = predictions if reference is None else reference
        record |= {"frames_per_s": n_gpu / record["seconds"], "vs_cpu": n_gpu / record["seconds"] / rows[0]["frames_per_s"],
                   "max_diff_vs_batch1": float(np.abs(predictions - reference).max())}
        rows.append(record)
    return rows


def phase_tests(quick: bool) -> list[dict[str, Any]]:
    """tests/test_cuda.py in a child pytest (its own CUDA context): one row per test, from pytest's JUnit XML."""
    import xml.etree.ElementTree as ET

    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "junit.xml"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=", f"--junitxml={report}",
             "tests/test_cuda.py"], cwd=ROOT, env=env, timeout=300, check=False,
        )
        rows = []
        for case in ET.parse(report).iter("testcase"):
            bad = next((c for c in case if c.tag in ("failure", "error", "skipped")), None)
            rows.append({"test": case.get("name"), "outcome": "passed" if bad is None else bad.tag,
                         "detail": None if bad is None else (bad.get("message") or "")[:200]})
    return rows


PHASES: dict[str, Callable[[bool], list[dict[str, Any]]]] = {
    "env": phase_env, "classify": phase_classify, "copies": phase_copies, "oom": phase_oom, "detect": phase_detect,
    "isolation": phase_isolation, "transnetv2": phase_transnetv2, "tests": phase_tests,
}
GROUPS = {
    "inference": ["env", "tests", "classify", "copies", "oom", "detect", "isolation"], "shots": ["env", "transnetv2"],
}


def markdown(command: str, results: dict[str, list[dict[str, Any]]]) -> str:
    """The run as a benchmarks/README.md section: the command, then each phase's table as printed."""
    lines = [f"\n### gpu_check run of {time.strftime('%Y-%m-%d %H:%M %Z')} ({TARGET})\n", f"Command: `{command}`\n"]
    for name, rows in results.items():
        lines += [f"{name}:", "", "```", *table_lines(rows), "```", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("phases", nargs="+", help=f"groups {sorted(GROUPS)} or phases {sorted(PHASES)}")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke test of the script")
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda", help="cpu: the GPU lines on the CPU (smoke test)")
    parser.add_argument("--json", type=Path, default=ROOT / "bench-out" / "gpu_check.json")
    parser.add_argument("--readme", type=Path, default=ROOT / "benchmarks" / "README.md",
                        help="the Markdown file the run's section is appended to")
    args = parser.parse_args()
    names = list(dict.fromkeys(p for name in args.phases for p in GROUPS.get(name, [name])))
    unknown = [n for n in names if n not in PHASES]
    if unknown:
        parser.error(f"unknown phases {unknown}")
    global TARGET
    TARGET = args.device
    if on_gpu() and not torch.cuda.is_available():
        parser.error("no usable CUDA device here (--device cpu runs the lines on the CPU)")
    results: dict[str, Any] = {}
    for name in names:
        try:
            results[name] = PHASES[name](args.quick)
        except Exception as e:  # noqa: BLE001 - one failing phase must not lose the others' figures of a GPU lease
            traceback.print_exc()
            results[name] = [{"error": f"{type(e).__name__}: {e}"[:500]}]
        table(name, results[name])
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=1, default=str))
    section = markdown(" ".join(["benchmarks/gpu_check.py", *sys.argv[1:]]), results)
    args.json.with_suffix(".md").write_text(section)
    with args.readme.open("a") as readme:
        readme.write(section)
    print(f"\nwrote {args.json}, {args.json.with_suffix('.md')} and appended it to {args.readme}")


if __name__ == "__main__":
    main()
