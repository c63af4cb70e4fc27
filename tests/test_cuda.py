"""The CUDA paths on a real GPU, Ray-free so that benchmarks/gpu_check.sh can run them on a GPU machine without Ray.
Skipped where torch sees no CUDA device (this suite's usual machine); tests/test_gpu_paths.py covers what happens
there when a GPU is asked for but unusable."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from vidbatch.config import InferenceConfig, TaskConfig
from vidbatch.core.devices import to_device
from vidbatch.decode.decode_stage import frames_batch
from vidbatch.infer.actor import ClipInferenceActor
from vidbatch.plan.frame_plan import FrameSpec

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _batch(clips: int, per_clip: int = 4) -> dict[str, np.ndarray]:
    """Smooth image-like frames (noise would put class scores on ties) as the decode stage hands them over."""
    rng = np.random.default_rng(0)
    small = torch.from_numpy(rng.integers(0, 256, (clips * per_clip, 3, 8, 8), dtype=np.uint8)).float()
    frames = torch.nn.functional.interpolate(small, size=(224, 224), mode="bicubic").clamp(0, 255).to(torch.uint8)
    frames = frames.permute(0, 2, 3, 1).numpy()
    rows = [
        {"video_id": "v", "video_uri": "v.mp4", "clip_id": f"c{i}", "clip_index": i, "start_s": float(i),
         "end_s": i + 1.0, "frames": frames[i * per_clip : (i + 1) * per_clip], "source_wh": (224, 224),
         "frame_times_s": [i + k / per_clip for k in range(per_clip)]}
        for i in range(clips)
    ]
    return frames_batch(rows, per_clip, FrameSpec(resize_short=256, crop=224))


def _classify(device: str, precision: str = "fp32") -> list[dict]:
    torch.manual_seed(0)  # the same random MobileNetV2 on both devices
    actor = ClipInferenceActor(
        [TaskConfig(model="mobilenet_v2", weights=None)], InferenceConfig(device=device, precision=precision)
    )
    return actor(_batch(8)).to_pylist()


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_classify_on_cuda_agrees_with_the_cpu(precision: str):
    cpu, gpu = _classify("cpu"), _classify("cuda", precision)
    cosines = [float(np.dot(a["embedding"], b["embedding"])) for a, b in zip(gpu, cpu)]
    assert min(cosines) > (0.999 if precision == "fp32" else 0.98), cosines
    if precision == "fp32":
        assert [r["labels"][0] for r in gpu] == [r["labels"][0] for r in cpu]


def test_frames_reach_the_gpu_through_pinned_memory_unchanged():
    frames = np.random.default_rng(1).integers(0, 256, (16, 224, 224, 3), dtype=np.uint8)
    tensor = to_device(frames, torch.device("cuda"))
    torch.cuda.synchronize()
    assert tensor.is_cuda and torch.equal(tensor.cpu(), torch.from_numpy(frames))
