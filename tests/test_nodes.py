"""A job over a real two-node Ray cluster on this machine (`ray start --head` and `ray start --address`, one CPU
each), run through `vidbatch run --address` in its own process (this session's embedded Ray stays out of it): the
decode tasks spread over both nodes, the manifest says where they ran, and the clips equal an embedded run's."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from raycluster import LocalCluster
from videos import make_video

import vidbatch
from vidbatch.store.committed import read_table

pytestmark = pytest.mark.e2e
RUN_SPECIFIC = ["run_id", "dt"]  # columns that name the run rather than the clip


def _job(archive: Path, out: Path) -> dict:
    # one-second units: 12 decode tasks to spread. Probed in Ray tasks, not on the driver: the probe tasks start a
    # worker on each node, and the decode tasks (milliseconds each) then find both ready instead of finishing on the
    # first node while the second one's first worker is still starting
    return {
        "inputs": [str(archive)], "output": str(out), "tasks": [], "clips": {"clip_seconds": 1.0},
        "decode": {"unit_seconds": 1.0}, "probe": {"driver_max_videos": 0}, "ray": {"progress_bars": False},
    }


def _clips(out: Path):
    clips = read_table(str(out), "clips")
    return clips.drop_columns([c for c in RUN_SPECIFIC if c in clips.column_names]).sort_by("clip_id")


def test_a_job_on_two_nodes_spreads_decode_and_writes_the_same_clips(ray_session, tmp_path: Path):
    archive = tmp_path / "archive"
    archive.mkdir()
    for i in range(4):
        make_video(archive / f"v{i}.mp4", seconds=3.0, fps=10)
    config = tmp_path / "job.yaml"
    config.write_text(yaml.safe_dump(_job(archive, tmp_path / "cluster_out")))

    with LocalCluster(nodes=2, cpus=1) as cluster:
        done = subprocess.run(
            [sys.executable, "-m", "vidbatch", "run", "--config", str(config), "--address", cluster.address],
            env={**os.environ, "RAY_AUTH_MODE": "disabled"}, capture_output=True, text=True, timeout=300, check=False,
        )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (manifest,) = (tmp_path / "cluster_out" / "runs").glob("*.json")
    nodes = json.loads(manifest.read_text())["nodes"]
    assert set(nodes) == set(cluster.labels)  # both nodes, by the ids Ray gave them
    assert sorted(cluster.labels.values()) == ["node_0", "node_1"]
    assert all(n["decode_tasks"] >= 1 and n["decoded_clips"] >= 1 and n["address"] for n in nodes.values()), nodes
    assert sum(n["decode_tasks"] for n in nodes.values()) == 12
    assert sum(n["decoded_clips"] for n in nodes.values()) == 12
    assert all(n["inference_batches"] == 0 for n in nodes.values())  # decode only

    embedded = vidbatch.run(_job(archive, tmp_path / "embedded_out"))
    assert embedded.counts.clips == 12 and len(embedded.nodes) == 1
    cluster_clips, embedded_clips = _clips(tmp_path / "cluster_out"), _clips(tmp_path / "embedded_out")
    assert cluster_clips.column_names == embedded_clips.column_names
    assert "decode_node" not in cluster_clips.column_names  # placement reaches the manifest only
    assert cluster_clips.equals(embedded_clips)


def test_the_manifest_counts_inference_batches_per_node(kinds_output):
    """One embedded node: every clip decoded and inferred there, in at least one batch."""
    _, _, _, summary = kinds_output
    (node,) = summary.nodes.values()
    assert node["decoded_clips"] == node["inferred_clips"] == summary.counts.clips
    assert node["decode_tasks"] >= 1 and node["inference_batches"] >= 1


def test_a_decode_worker_does_not_import_the_pipeline_or_torch(tmp_path: Path):
    """The stamped decode stage travels by value: unpickling it (what a decode worker does) imports the Ray-free
    decode stage, not vidbatch.pipeline, whose inference imports bring torch (~600 MiB per worker)."""
    import functools

    from ray import cloudpickle

    from vidbatch.core.schema import result_schema
    from vidbatch.pipeline import _decoded_rows, _DecodeOnNode
    from vidbatch.plan.frame_plan import DEFAULT_FRAME_SPEC

    payload = tmp_path / "stage.pkl"
    payload.write_bytes(cloudpickle.dumps(
        (_DecodeOnNode(DEFAULT_FRAME_SPEC, "auto", 1, 8), functools.partial(_decoded_rows, schema=result_schema([])))
    ))
    code = (
        "import json, sys\nfrom ray import cloudpickle\n"
        f"stage, rows = cloudpickle.loads(open({str(payload)!r}, 'rb').read())\n"
        "print(json.dumps([type(stage).__name__, 'vidbatch.pipeline' in sys.modules, 'torch' in sys.modules]))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.splitlines()[-1]) == ["DecodeStage", False, False]
