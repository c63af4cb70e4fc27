"""Frame embeddings, temporal heads, events and frame export end to end: one real run (MobileNetV2 weights,
generated videos, frames on) through the shared local Ray, then the CLI as a user calls it."""
from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch
from deltalake import write_deltalake
from PIL import Image
from typer.testing import CliRunner

import vidbatch
from vidbatch.cli import app
from vidbatch.config import TaskConfig
from vidbatch.core.ids import video_id_for
from vidbatch.core.schema import EVENTS, FRAMES, SHOTS
from vidbatch.decode.decoder import decode_unit
from vidbatch.infer.head_files import read_head, write_head
from vidbatch.infer.tasks import get_task
from vidbatch.plan.clips import ClipPlan, WorkUnit
from vidbatch.plan.probe import probe_video
from vidbatch.read.query import run_query
from vidbatch.read.report import render_report
from vidbatch.store.committed import read_table

pytestmark = pytest.mark.e2e

FPS = 10
CLIP_S = 0.8  # 8 frames at 10 fps: each order clip is 4 frames of one photo, then 4 of the other
RED, BLUE = (220, 20, 20), (20, 40, 220)
SWITCH_S = 4.4  # redblue.mp4 turns from red to blue inside its sixth clip (4.0-4.8 s)


@pytest.fixture(scope="module")
def temporal_output(ray_session, mobilenet_weights, tmp_path_factory):
    """(OUT, archive, {(file, clip_index): order label}, run summary)."""
    from order_clips import make_colour_video, make_order_archive
    from videos import make_video

    archive = tmp_path_factory.mktemp("temporal")
    order = make_order_archive(archive, videos=2, clips_per_video=60, fps=FPS)
    make_colour_video(archive / "red.mp4", [(RED, 4.0)], fps=FPS)
    make_colour_video(archive / "blue.mp4", [(BLUE, 4.0)], fps=FPS)
    make_colour_video(archive / "redblue.mp4", [(RED, SWITCH_S), (BLUE, 8.8 - SWITCH_S)], fps=FPS)
    make_video(archive / "index.mp4", seconds=3.0, fps=FPS)  # frame i shows i (videos.index_frame)
    out = tmp_path_factory.mktemp("temporal_run") / "out"
    summary = vidbatch.run(
        {
            "inputs": [str(archive)], "output": str(out),
            "clips": {"clip_seconds": CLIP_S}, "sampling": {"frames_per_clip": 8},
            "tasks": [{"task": "classify", "weights_path": mobilenet_weights, "top_k": 1}],
            "out": {"frame_embeddings": True},
        }
    )
    assert summary.status == "complete", summary
    return out, archive, order, summary


def clip_ids(out: Path, name: str) -> list[str]:
    rows = run_query(str(out), f"SELECT clip_id FROM clips WHERE video_uri LIKE '%/{name}' ORDER BY clip_index").to_pylist()
    return [r["clip_id"] for r in rows]


def write_labels(path: Path, labels: dict[str, str]) -> Path:
    path.write_text("clip_id,label\n" + "".join(f"{k},{v}\n" for k, v in labels.items()))
    return path


@pytest.fixture(scope="module")
def order_labels(temporal_output, tmp_path_factory) -> tuple[Path, dict[str, str]]:
    out, _, order, _ = temporal_output
    rows = run_query(str(out), "SELECT clip_id, video_uri, clip_index FROM clips WHERE video_uri LIKE '%order%'").to_pylist()
    labels = {r["clip_id"]: order[(Path(r["video_uri"]).name, r["clip_index"])] for r in rows}
    return write_labels(tmp_path_factory.mktemp("labels") / "order.csv", labels), labels


def test_frames_table_holds_every_sampled_frame(temporal_output):
    out, _, _, summary = temporal_output
    frames = read_table(str(out), "frames")
    assert frames.schema.equals(FRAMES, check_metadata=False)
    assert frames.num_rows == summary.counts.sampled_frames == 8 * summary.counts.clips
    joined = run_query(
        str(out),
        "SELECT c.clip_id, list(f.time_s ORDER BY f.frame_index) AS times, any_value(c.frame_times_s) AS planned,"
        " count(*) AS n FROM frames f JOIN clips c USING (clip_id) GROUP BY c.clip_id",
    ).to_pylist()
    assert len(joined) == summary.counts.clips and all(r["times"] == r["planned"] and r["n"] == 8 for r in joined)
    # a clip of one still colour: each frame's embedding is (nearly) the clip's
    red = clip_ids(out, "red.mp4")[1]
    clip = np.asarray(run_query(str(out), f"SELECT embedding FROM clips WHERE clip_id = '{red}'")["embedding"][0].as_py())
    own = run_query(str(out), f"SELECT embedding FROM frames WHERE clip_id = '{red}'")["embedding"].to_pylist()
    assert all(float(np.dot(clip, f)) > 0.99 for f in own)
    assert all(abs(np.linalg.norm(f) - 1) < 1e-4 for f in own)


def _compare_line(output: str) -> tuple[float, float]:
    found = re.search(r"compare, same split: (\w+) ([\d.]+) \(.*\), linear ([\d.]+)", output)
    assert found, output
    return float(found[2]), float(found[3])


@pytest.mark.parametrize("kind", ["gru", "tcn"])
def test_a_temporal_head_tells_the_order_a_linear_head_cannot(temporal_output, order_labels, tmp_path, kind):
    out = temporal_output[0]
    labels_csv, labels = order_labels
    head_path = tmp_path / f"{kind}.pt"
    result = CliRunner().invoke(
        app, ["train-head", str(out), "--labels", str(labels_csv), "--temporal", kind, "--compare", "-o", str(head_path)]
    )
    assert result.exit_code == 0, result.output
    temporal, linear = _compare_line(result.stdout)
    assert f"{kind} head" in result.stdout and "held-out accuracy" in result.stdout
    assert temporal >= 0.9, result.stdout
    assert 0.3 <= linear <= 0.7, result.stdout  # the clips' mean embeddings are the same either way: chance
    head, head_id = read_head(str(head_path))
    assert head.kind == kind and head.held_out_accuracy == temporal and head.embedding_model == "mobilenet_v2:IMAGENET1K_V1"

    applied = CliRunner().invoke(app, ["apply-head", str(out), str(head_path)])
    assert applied.exit_code == 0, applied.output
    predicted = read_table(str(out), "head_predictions").to_pylist()
    mine = {r["clip_id"]: r["label"] for r in predicted if r["head_id"] == head_id}
    assert len(mine) == temporal_output[3].counts.clips  # every clip with frames
    assert np.mean([mine[c] == label for c, label in labels.items()]) >= 0.95  # it was fitted on all of them


def test_the_head_task_applies_a_temporal_head_in_the_job(temporal_output, order_labels, mobilenet_weights, tmp_path):
    """The `head` task runs a temporal head on the frame embeddings of the job's own forward pass: the same labels
    as apply-head on the stored frames."""
    out, archive, _, _ = temporal_output
    head_path = tmp_path / "gru.pt"
    trained = CliRunner().invoke(app, ["train-head", str(out), "--labels", str(order_labels[0]), "--temporal", "gru", "-o", str(head_path)])
    assert trained.exit_code == 0, trained.output
    assert CliRunner().invoke(app, ["apply-head", str(out), str(head_path)]).exit_code == 0
    _, head_id = read_head(str(head_path))
    stored = {r["clip_id"]: r["label"] for r in read_table(str(out), "head_predictions").to_pylist() if r["head_id"] == head_id}

    cfg = TaskConfig(task="head", head_path=str(head_path), weights_path=mobilenet_weights)
    task_cls = get_task("head")
    task = task_cls(cfg, torch.device("cpu"))
    uri = str(archive / "order0.mp4")
    info = probe_video(uri)
    rows = run_query(str(out), f"SELECT clip_id, clip_index, start_s, end_s, frame_times_s FROM clips WHERE video_uri = '{uri}' ORDER BY clip_index LIMIT 6").to_pylist()
    plans = tuple(ClipPlan(r["clip_index"], r["clip_id"], r["start_s"], r["end_s"], tuple(r["frame_times_s"])) for r in rows)
    unit = WorkUnit(uri, video_id_for(uri), 0, info.start_s, info.keyframe_interval_s, plans)
    decoded = list(decode_unit(unit, task_cls.frame_spec(cfg)))
    frames = torch.from_numpy(np.concatenate([d.frames for d in decoded]))
    labels = task.predict(frames, [len(d.frames) for d in decoded], batch_size=16)["head_label"]
    assert labels == [stored[r["clip_id"]] for r in rows]


def test_temporal_heads_are_refused_without_frames_or_on_another_model(temporal_output, order_labels, mobilenet_weights, tmp_path):
    out = temporal_output[0]
    plain = tmp_path / "plain"
    summary = vidbatch.run(
        {
            "inputs": [str(temporal_output[1] / "index.mp4")], "output": str(plain), "clips": {"clip_seconds": CLIP_S},
            "sampling": {"frames_per_clip": 2}, "tasks": [{"task": "classify", "weights_path": mobilenet_weights}],
        }
    )
    assert summary.status == "complete" and read_table(str(plain), "frames") is None
    ids = clip_ids(plain, "index.mp4")
    labels = write_labels(tmp_path / "l.csv", {c: "ab"[i % 2] for i, c in enumerate(ids)})
    refused = CliRunner().invoke(app, ["train-head", str(plain), "--labels", str(labels), "--temporal", "gru", "-o", str(tmp_path / "h.pt")])
    assert refused.exit_code == 2 and "no frames table" in refused.stderr and "out.frame_embeddings: true" in refused.stderr

    head_path = tmp_path / "gru.pt"
    assert CliRunner().invoke(app, ["train-head", str(out), "--labels", str(order_labels[0]), "--temporal", "gru", "-o", str(head_path)]).exit_code == 0
    refused = CliRunner().invoke(app, ["apply-head", str(plain), str(head_path)])
    assert refused.exit_code == 2 and "no frames table" in refused.stderr

    head, _ = read_head(str(head_path))
    from dataclasses import replace

    other = tmp_path / "other.pt"
    write_head(replace(head, embedding_model="resnet18:IMAGENET1K_V1"), str(other))
    refused = CliRunner().invoke(app, ["apply-head", str(out), str(other)])
    assert refused.exit_code == 2
    assert "made with mobilenet_v2:IMAGENET1K_V1, not resnet18:IMAGENET1K_V1" in refused.stderr, refused.stderr
    bad_kind = CliRunner().invoke(app, ["train-head", str(out), "--labels", str(order_labels[0]), "--temporal", "lstm", "-o", str(other)])
    assert bad_kind.exit_code == 2 and "gru, tcn" in bad_kind.stderr


def test_a_red_then_blue_video_gives_two_events(temporal_output, tmp_path):
    out = temporal_output[0]
    labels = {c: "red" for c in clip_ids(out, "red.mp4")} | {c: "blue" for c in clip_ids(out, "blue.mp4")}
    head_path = tmp_path / "colour.pt"
    trained = CliRunner().invoke(app, ["train-head", str(out), "--labels", str(write_labels(tmp_path / "c.csv", labels)), "-o", str(head_path)])
    assert trained.exit_code == 0, trained.output
    assert CliRunner().invoke(app, ["apply-head", str(out), str(head_path)]).exit_code == 0
    _, head_id = read_head(str(head_path))

    made = CliRunner().invoke(app, ["events", str(out), "--source", "head", "--head-id", head_id, "--show", "1000"])
    assert made.exit_code == 0, made.output
    assert "redblue.mp4" in made.stdout and f"(head {head_id})" in made.stdout
    events = run_query(
        str(out), "SELECT e.* FROM events e JOIN videos v USING (video_id) WHERE v.video_uri LIKE '%/redblue.mp4' "
        "AND e.source = 'head' ORDER BY event_index"
    ).to_pylist()
    assert read_table(str(out), "events").schema.equals(EVENTS, check_metadata=False)
    assert [e["label"] for e in events] == ["red", "blue"], events
    first, second = events
    assert first["start_s"] == 0 and abs(first["end_s"] - SWITCH_S) <= CLIP_S  # within one clip of the switch
    assert second["start_s"] == first["end_s"] and second["end_s"] == pytest.approx(8.8)
    assert first["clip_count"] + second["clip_count"] == 11 and {first["head_id"], second["head_id"]} == {head_id}
    assert all(0.5 < e["score"] <= 1 for e in events)

    # classify labels: events of their own source, the head's stay; --min-seconds leaves short ones out
    assert CliRunner().invoke(app, ["events", str(out)]).exit_code == 0
    by_source = run_query(str(out), "SELECT source, count(*) AS n, min(end_s - start_s) AS shortest FROM events GROUP BY 1 ORDER BY 1").to_pylist()
    assert [r["source"] for r in by_source] == ["classify", "head"]
    assert CliRunner().invoke(app, ["events", str(out), "--min-seconds", "1.5"]).exit_code == 0
    kept = run_query(str(out), "SELECT min(end_s - start_s) AS shortest, count(*) AS n FROM events WHERE source = 'classify'").to_pylist()[0]
    assert 0 < kept["n"] < by_source[0]["n"] and kept["shortest"] >= 1.5 - 1e-9

    html = render_report(str(out))
    assert "events (head)" in html and "events (classify)" in html
    assert html.count('title="red: ') >= 2  # red.mp4 and redblue.mp4 on the head's events row

    missing = CliRunner().invoke(app, ["events", str(out), "--source", "head", "--head-id", "nope"])
    assert missing.exit_code == 2 and "no predictions of head 'nope'" in missing.stderr


def read_index(path_or_bytes: Path | bytes) -> tuple[int, tuple[int, int]]:
    """The frame number index.mp4 shows in a JPEG (videos.index_frame), and the JPEG's size."""
    from videos import read_index as index_of

    data = path_or_bytes if isinstance(path_or_bytes, bytes) else path_or_bytes.read_bytes()
    image = Image.open(io.BytesIO(data)).convert("RGB")
    return index_of(np.asarray(image)), image.size


def test_export_frames_every_seconds_and_per_shot(temporal_output, tmp_path):
    out = temporal_output[0]
    target = tmp_path / "every"
    result = CliRunner().invoke(app, ["export-frames", str(out), "--to", str(target), "--every", "0.5"])
    assert result.exit_code == 0, result.output
    files = sorted(p.name for p in (target / "index").iterdir())
    assert files == ["00000.000.jpg", "00000.500.jpg", "00001.000.jpg", "00001.500.jpg", "00002.000.jpg", "00002.500.jpg"]
    for name in files:
        assert read_index(target / "index" / name) == (round(float(name[:-4]) * FPS), (160, 120))
    index = list(csv.DictReader((target / "index.csv").open()))
    assert {(r["file"], float(r["time_s"])) for r in index if r["file"].startswith("index/")} == {
        (f"index/{n}", float(n[:-4])) for n in files
    }
    assert len([r for r in index if r["file"].startswith("order0/")]) == 96  # 48 s, every 0.5 s
    assert len(index) == len({r["file"] for r in index}) == sum(1 for _ in target.rglob("*.jpg"))

    no_shots = CliRunner().invoke(app, ["export-frames", str(out), "--to", str(tmp_path / "s"), "--shots"])
    assert no_shots.exit_code == 2 and "no shots table" in no_shots.stderr
    vid = video_id_for(str(temporal_output[1] / "index.mp4"))
    shots = pa.table({
        "video_id": [vid, vid], "shot_index": pa.array([0, 1], pa.int32()), "start_s": [0.0, 1.5], "end_s": [1.5, 3.0],
        "start_frame": [0, 15], "end_frame": [14, 29], "boundary_score": pa.array([None, 0.9], pa.float32()),
        "detector": ["content", "content"], "run_id": ["test", "test"],
    }).cast(SHOTS)
    write_deltalake(str(out / "shots"), shots)
    per_shot = CliRunner().invoke(app, ["export-frames", str(out), "--to", str(tmp_path / "s"), "--shots"])
    assert per_shot.exit_code == 0, per_shot.output
    assert sorted(p.name for p in (tmp_path / "s" / "index").iterdir()) == ["00000.700.jpg", "00002.200.jpg"]  # middles
    assert read_index(tmp_path / "s" / "index" / "00002.200.jpg")[0] == 22
    rows = list(csv.DictReader((tmp_path / "s" / "index.csv").open()))
    assert [r["shot_index"] for r in rows] == ["0", "1"]

    neither = CliRunner().invoke(app, ["export-frames", str(out), "--to", str(tmp_path / "x")])
    assert neither.exit_code == 2 and "exactly one of" in neither.stderr


def test_export_thumbnails_decodes_nothing_and_writes_to_s3(temporal_output, s3_endpoint, tmp_path, monkeypatch):
    import s3fs

    import vidbatch.read.frame_export as frame_export

    out, _, _, summary = temporal_output
    monkeypatch.setattr(frame_export, "decode_unit", None)  # thumbnails come from clips/, nothing is decoded
    target = tmp_path / "thumbs"
    result = CliRunner().invoke(app, ["export-frames", str(out), "--to", str(target), "--thumbnails"])
    assert result.exit_code == 0, result.output
    index = list(csv.DictReader((target / "index.csv").open()))
    assert len(index) == summary.counts.clips and all(r["clip_id"] for r in index)
    for r in (r for r in index if r["file"].startswith("index/")):  # the middle sampled frame of the clip
        assert read_index(target / r["file"]) == (round(float(r["time_s"]) * FPS), (160, 120))

    url, options = s3_endpoint
    fs = s3fs.S3FileSystem(**options)
    fs.mkdir("frames-bucket")
    to_options = [f"--to-option=endpoint_url={url}", "--to-option=key=testing", "--to-option=secret=testing"]
    result = CliRunner().invoke(app, ["export-frames", str(out), "--to", "s3://frames-bucket/export", "--thumbnails", *to_options])
    assert result.exit_code == 0, result.output
    stored = {p.removeprefix("frames-bucket/export/") for p in fs.find("frames-bucket/export")}
    assert stored == {r["file"] for r in index} | {"index.csv"}
    assert fs.cat_file("frames-bucket/export/index.csv").decode() == (target / "index.csv").read_text()
