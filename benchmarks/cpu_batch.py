"""MobileNetV2 forward throughput on the CPU by batch size: the figures behind `inference.batch_size`'s CPU default.

    .venv/bin/python benchmarks/cpu_batch.py [--threads 1] [--procs 1] [--seconds 4]

--procs N runs N such processes at once (as the CPU pool's single-threaded actors do) and prints each one's lines.
Random weights: the speed of a forward pass does not depend on them.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time


def measure(threads: int, seconds: float, batches: list[int]) -> None:
    import torch
    import torchvision

    torch.set_num_threads(threads)
    model = torchvision.models.mobilenet_v2().eval()
    x = torch.randn(max(batches), 3, 224, 224)
    with torch.inference_mode():
        model(x[:4])  # warm-up
        for batch in batches:
            n, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds:
                model(x[:batch])
                n += batch
            print(f"threads={threads} batch={batch}: {n / (time.perf_counter() - start):.1f} images/s", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--procs", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--batches", default="2,4,8,16")
    args = ap.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    if args.procs == 1:
        measure(args.threads, args.seconds, batches)
        return
    child = [sys.executable, __file__, "--threads", str(args.threads), "--seconds", str(args.seconds), "--batches", args.batches]
    for proc in [subprocess.Popen(child) for _ in range(args.procs)]:
        proc.wait()


if __name__ == "__main__":
    main()
