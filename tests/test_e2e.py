"""End to end through a real local Ray (one session for all tests), real PyAV, real Parquet."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import vidbatch
from vidbatch.cli import app
from vidbatch.config import TaskConfig
from vidbatch.core.schema import ERRORS, VIDEOS
from vidbatch.decode.decoder import frame_to_array
from vidbatch.infer.tasks import get_task
from vidbatch.store.committed import read_table

pytestmark = pytest.mark.e2e


def read(out: Path, table: str):
    """Committed rows only, as every reader sees them."""
    return read_table(str(out), table)


@pytest.fixture(scope="module")
def classify_run(ray_session, video_dir: Path, mobilenet_weights: str, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "out"
    summary = vidbatch.run(
        {
            "inputs": [str(video_dir)],
            "output": str(out),
            "clips": {"clip_seconds": 1.0},
            "sampling": {"frames_per_clip": 4},
            "decode": {"unit_seconds": 2.0},
            "tasks": [{"task": "classify", "weights_path": mobilenet_weights, "top_k": 3}],
            "inference": {"batch_size": 16},
        }
    )
    return summary, out


def test_clip_counts_errors_and_manifest(classify_run, video_dir: Path):
    summary, out = classify_run
    clips = read(out, "clips")
    per_video = {Path(u).name: n for u, n in zip(*np.unique(clips["video_uri"].to_numpy(zero_copy_only=False), return_counts=True))}
    # a: 3 s, b: 4.5 s (last 0.5 s kept), c: 2 s, 1 s clips
    assert per_video == {"a.mp4": 3, "b.mp4": 5, "c.mp4": 2}
    assert clips.num_rows == len(set(clips["clip_id"].to_pylist()))

    errors = read(out, "errors")
    assert errors.num_rows == 1
    (err,) = errors.to_pylist()
    assert Path(err["video_uri"]).name == "corrupt.mp4" and err["stage"] == "probe" and err["error_type"]
    assert errors.schema.equals(ERRORS, check_metadata=False)

    videos = read(out, "videos")
    assert videos.schema.equals(VIDEOS, check_metadata=False)
    status = {Path(r["video_uri"]).name: (r["status"], r["clip_count"]) for r in videos.to_pylist()}
    assert status == {"a.mp4": ("ok", 3), "b.mp4": ("ok", 5), "c.mp4": ("ok", 2), "corrupt.mp4": ("failed", 0)}

    manifest = json.loads((out / "runs" / f"{summary.run_id}.json").read_text())
    c = manifest["counts"]
    assert c["inputs"] == c["ok"] + c["failed"] == 4 and c["failed"] == 1
    assert c["clips"] == 10 and c["sampled_frames"] == 40 and c["ignored_files"] == 1
    assert manifest["status"] == "partial" and manifest["exit_code"] == 3
    assert manifest["versions"]["ray"] and manifest["throughput"]["clips_per_s"] > 0
    assert summary.exit_code == 3


def test_clip_rows_are_complete(classify_run):
    _, out = classify_run
    rows = read(out, "clips").to_pylist()
    for r in rows:
        assert r["model"] == "mobilenet_v2:IMAGENET1K_V1"
        assert len(r["labels"]) == len(r["scores"]) == 3
        assert len(r["frame_times_s"]) == 4
        assert r["start_s"] <= r["frame_times_s"][0] and r["frame_times_s"][-1] < r["end_s"]
        assert np.linalg.norm(np.asarray(r["embedding"])) == pytest.approx(1.0, abs=1e-5)
    assert {r["run_id"] for r in rows} == {rows[0]["run_id"]}


def test_scores_equal_a_plain_single_process_loop(classify_run, mobilenet_weights: str):
    """A naive loop picks the same frames by index from an independent plan, decodes every frame with PyAV and
    runs the same model: per-clip scores and embeddings agree to 1e-4."""
    _, out = classify_run
    rows = read(out, "clips").to_pylist()
    cfg = TaskConfig(weights_path=mobilenet_weights, top_k=3)
    task = get_task("classify")(cfg, torch.device("cpu"))
    spec = get_task("classify").frame_spec(cfg)
    for uri in sorted({r["video_uri"] for r in rows}):
        with av.open(uri) as c:
            fps = float(c.streams.video[0].average_rate)
            frames = [frame_to_array(f, spec) for f in c.decode(video=0)]
        for r in (r for r in rows if r["video_uri"] == uri):
            first, stop = math.ceil(r["start_s"] * fps - 1e-6), min(len(frames), math.ceil(r["end_s"] * fps - 1e-6))
            indices = [first + math.floor((i + 0.5) * (stop - first) / 4) for i in range(4)]  # frames_per_clip=4
            assert r["frame_times_s"] == pytest.approx([i / fps for i in indices], abs=1e-6)
            probs, feats = task.forward_frames(torch.from_numpy(np.stack([frames[i] for i in indices])), batch_size=64)
            mean = probs.mean(0)
            assert mean.topk(3).indices.tolist() == [task.categories.index(label) for label in r["labels"]]
            assert r["scores"] == pytest.approx(mean.topk(3).values.tolist(), abs=1e-4)
            emb = torch.nn.functional.normalize(feats.mean(0), dim=0).numpy()
            assert np.asarray(r["embedding"]) == pytest.approx(emb, abs=1e-4)


def test_decode_only_run(ray_session, video_dir: Path, tmp_path: Path):
    summary = vidbatch.run(
        {"inputs": [str(video_dir / "a.mp4"), str(video_dir / "nested")], "output": str(tmp_path / "o"), "tasks": [],
         "clips": {"clip_seconds": 1.0}, "sampling": {"sample_fps": 5}}
    )
    assert summary.exit_code == 0 and summary.status == "complete"
    clips = read(tmp_path / "o", "clips")
    assert clips.num_rows == 5 and "embedding" not in clips.column_names
    assert {len(t) for t in clips["frame_times_s"].to_pylist()} == {5}
    assert read(tmp_path / "o", "errors").num_rows == 0


def test_truncated_video_is_one_error_and_good_clips_survive(ray_session, video_dir: Path, tmp_path: Path):
    from test_decode import faststart_copy

    cut = faststart_copy(video_dir / "b.mp4", tmp_path / "cut.mp4")
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
    summary = vidbatch.run(
        {"inputs": [str(cut), str(video_dir / "a.mp4")], "output": str(tmp_path / "o"), "tasks": [],
         "clips": {"clip_seconds": 1.0}, "decode": {"unit_seconds": 1.0}}  # several failing units, one error row
    )
    assert summary.exit_code == 3 and summary.counts.failed == 1 and summary.counts.ok == 1
    (err,) = read(tmp_path / "o", "errors").to_pylist()
    assert err["stage"] == "decode" and err["error_type"] == "DecodeError" and err["clip_id"]
    assert "more failures in this video" in err["message"] and err["end_s"] == pytest.approx(4.5)
    videos = {Path(r["video_uri"]).name: r for r in read(tmp_path / "o", "videos").to_pylist()}
    assert videos["cut.mp4"]["status"] == "failed" and 0 < videos["cut.mp4"]["clip_count"] < 5
    assert videos["a.mp4"]["clip_count"] == 3


def test_cli_exit_codes_and_table(ray_session, video_dir: Path, mobilenet_weights: str, tmp_path: Path):
    runner = CliRunner()
    ok = runner.invoke(app, ["run", str(video_dir / "a.mp4"), "-o", str(tmp_path / "ok"),
                             "--set", f"tasks.0.weights_path={mobilenet_weights}"])
    assert ok.exit_code == 0, ok.output
    assert "a.mp4" in ok.output and "0.00-  2.00s" in ok.output and "complete" in ok.output
    partial = runner.invoke(app, ["run", str(video_dir / "a.mp4"), str(video_dir / "corrupt.mp4"), str(tmp_path / "missing.mp4"),
                                  "-o", str(tmp_path / "p"), "--set", "tasks=[]"])
    assert partial.exit_code == 3, partial.output
    stages = sorted(r["stage"] for r in read(tmp_path / "p", "errors").to_pylist())
    assert stages == ["list", "probe"]
    # the summary shows the error rows themselves: file name, stage, message
    lines = partial.stdout.splitlines()
    errors = lines[lines.index("errors:") + 3 : lines.index("errors:") + 5]
    assert [line.split()[:2] for line in errors] == [["corrupt.mp4", "probe"], ["missing.mp4", "list"]]
    assert "FileNotFoundError" in errors[1] and str(tmp_path) not in errors[0]


def test_cli_process_starts_its_own_embedded_ray(video_dir: Path, tmp_path: Path):
    """The installed `vidbatch` command in a fresh process: embedded Ray start-up, real exit code, manifest."""
    import subprocess
    import sys

    exe = Path(sys.executable).with_name("vidbatch")
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.run(
        [str(exe), "run", str(video_dir / "a.mp4"), str(video_dir / "corrupt.mp4"), "-o", str(tmp_path / "o"),
         "--set", "tasks=[]", "--set", "ray.num_cpus=1", "--set", "ray.progress_bars=false"],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "2 videos listed: 1 new, 0 changed, 0 skipped, 1 failed" in proc.stdout
    (manifest,) = (tmp_path / "o" / "runs").glob("*.json")
    assert json.loads(manifest.read_text())["counts"]["clips"] == 2  # 3 s in default 2 s clips


def test_an_actor_pool_that_leaves_no_cpu_for_decoding_is_refused(ray_session, video_dir: Path, tmp_path: Path):
    result = CliRunner().invoke(app, ["run", str(video_dir / "a.mp4"), "-o", str(tmp_path / "o"),
                                      "--set", "inference.num_actors=2"])
    assert result.exit_code == 2
    assert "inference.num_actors x inference.num_cpus (2 x 1) plus decode.num_cpus (1) need 3 CPUs" in result.output
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (["tasks=[]", "decode.num_cpus=3"], "decode.num_cpus (3) exceeds the Ray cluster's 2 CPUs"),
        (["inference.num_gpus=1"], "inference asks for GPUs (1 actor x num_gpus=1, device=auto), the cluster has 0"),
        (["tasks=[]", "decode.memory_mb=100000000"], "decode.memory_mb (100000000) exceeds the most memory a Ray node has"),
    ],
)
def test_unschedulable_requests_are_refused(ray_session, video_dir: Path, tmp_path: Path, settings, message):
    args = ["run", str(video_dir / "a.mp4"), "-o", str(tmp_path / "o")] + [a for s in settings for a in ("--set", s)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and message in result.output


def test_a_crash_still_writes_a_manifest(ray_session, video_dir: Path, tmp_path: Path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "clips").write_text("a file where the clips directory should be")
    with pytest.raises(Exception):  # noqa: B017 - whatever the file system raises
        vidbatch.run({"inputs": [str(video_dir / "a.mp4")], "output": str(out), "tasks": [], "run_id": "crash1"})
    manifest = json.loads((out / "runs" / "crash1.json").read_text())
    assert manifest["status"] == "crashed" and manifest["exit_code"] == 1 and manifest["error"]


def test_repeated_and_missing_inputs_keep_counts_consistent(ray_session, video_dir: Path, tmp_path: Path):
    gone = str(tmp_path / "gone.mp4")
    summary = vidbatch.run({"inputs": [str(video_dir / "a.mp4"), str(video_dir / "a.mp4"), gone, gone],
                            "output": str(tmp_path / "o"), "tasks": []})
    c = summary.counts
    assert (c.inputs, c.listed, c.ok, c.failed, c.unreadable_inputs) == (2, 1, 1, 0, 1)
    videos = read(tmp_path / "o", "videos")
    assert videos.num_rows == 2 and len(set(videos["video_id"].to_pylist())) == 2


def test_cli_on_a_terminal_shows_one_live_display_and_no_ray_chatter(video_dir: Path, tmp_path: Path):
    """A fresh `python -m vidbatch run` with stderr on a pseudo-terminal: vidbatch's live progress, none of Ray's
    INFO lines or its core_worker actor notice; the summary on stdout. The manifest records the phases' times."""
    import pty
    import subprocess
    import sys
    import threading

    master, slave = pty.openpty()
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONPATH": str(Path(__file__).parents[1]), "COLUMNS": "120"}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "vidbatch", "run", str(video_dir / "a.mp4"), str(video_dir / "corrupt.mp4"),
         "-o", str(tmp_path / "o"), "--set", "tasks=[]", "--set", "ray.num_cpus=2"],
        stdout=subprocess.PIPE, stderr=slave, text=True, env=env,
    )
    os.close(slave)
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # the last writer closed the terminal
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    stdout, _ = proc.communicate(timeout=300)
    reader.join(timeout=10)
    os.close(master)
    terminal = b"".join(chunks).decode(errors="replace")
    assert proc.returncode == 3, stdout + terminal
    assert "vidbatch" in terminal and "videos probed" in terminal  # the live display drew on the terminal
    assert "INFO" not in terminal and "core_worker" not in terminal and "Progress bars disabled" not in terminal
    assert "1 new, 0 changed, 0 skipped, 1 failed" in stdout and "corrupt.mp4" in stdout
    (manifest,) = (tmp_path / "o" / "runs").glob("*.json")
    stages = json.loads(manifest.read_text())["stage_s"]
    assert {"list", "ray", "probe", "stream"} <= set(stages)
    assert any(k.startswith("ray_task_s:MapBatches(DecodeStage)") for k in stages)  # fused with result_table here
