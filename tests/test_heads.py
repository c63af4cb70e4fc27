"""Custom heads on stored embeddings: trained on half the clips, they label the other half; in a job as a task;
refused on another embedding model."""
from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import vidbatch
from vidbatch.cli import app
from vidbatch.config import ConfigError
from vidbatch.core.schema import HEAD_PREDICTIONS
from vidbatch.infer.head_files import read_head
from vidbatch.job import load_config
from vidbatch.read.heads import read_labels
from vidbatch.read.query import run_query
from vidbatch.store.committed import read_table

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def trained_head(kinds_output, tmp_path_factory):
    """A head trained on every other clip (by video name and position; clip ids change with each session's temp
    paths, and so would the split), with each clip's kind as its label."""
    out, _, kinds, _ = kinds_output
    clips = run_query(str(out), "SELECT clip_id, video_uri, clip_index FROM clips").to_pylist()
    clips.sort(key=lambda c: (Path(c["video_uri"]).name, c["clip_index"]))
    truth = {c["clip_id"]: kinds[Path(c["video_uri"]).name] for c in clips}
    labelled = dict(list(truth.items())[::2])
    work = tmp_path_factory.mktemp("head")
    labels = work / "labels.csv"
    labels.write_text("clip_id,label\n" + "".join(f"{k},{v}\n" for k, v in labelled.items()))
    head_path = work / "head.pt"
    result = CliRunner().invoke(app, ["train-head", str(out), "--labels", str(labels), "-o", str(head_path)])
    assert result.exit_code == 0, result.output
    return head_path, truth, labelled, result.stdout


def test_head_labels_the_unlabelled_half(kinds_output, trained_head, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(kinds_output[0], out)  # the session's shared output stays as the job wrote it
    head_path, truth, labelled, printed = trained_head
    assert "held-out accuracy 1.000" in printed
    head, head_id = read_head(str(head_path))
    assert head.class_names == ["gradient", "stripes"] and head.embedding_model == "mobilenet_v2:IMAGENET1K_V1"

    result = CliRunner().invoke(app, ["apply-head", str(out), str(head_path)])
    assert result.exit_code == 0, result.output
    table = read_table(str(out), "head_predictions")
    assert table.schema.equals(HEAD_PREDICTIONS, check_metadata=False) and table.num_rows == len(truth)
    predicted = {r["clip_id"]: r["label"] for r in table.to_pylist()}
    unlabelled = {c for c in truth if c not in labelled}
    assert len(unlabelled) == 9
    assert {c: predicted[c] for c in unlabelled} == {c: truth[c] for c in unlabelled}
    assert set(table["head_id"].to_pylist()) == {head_id}
    # applying the same head again replaces its predictions, and they are queryable
    CliRunner().invoke(app, ["apply-head", str(out), str(head_path)])
    assert run_query(str(out), "SELECT count(*) AS n FROM head_predictions").to_pylist() == [{"n": len(truth)}]


def test_head_as_a_job_task(kinds_output, trained_head, mobilenet_weights, tmp_path):
    _, archive, _, _ = kinds_output
    head_path = trained_head[0]
    out = tmp_path / "nightly"
    summary = vidbatch.run(
        {
            "inputs": [str(archive / "stripes2.mp4"), str(archive / "gradient0.mp4")],
            "output": str(out),
            "clips": {"clip_seconds": 1.5},
            "sampling": {"frames_per_clip": 2},
            "tasks": [{"task": "head", "head_path": str(head_path), "weights_path": mobilenet_weights}],
            "out": {"thumbnails": False},
        }
    )
    assert summary.status == "complete"
    rows = pq.read_table(out / "clips").to_pylist()
    assert {(Path(r["video_uri"]).name, r["head_label"]) for r in rows} == {("stripes2.mp4", "stripes"), ("gradient0.mp4", "gradient")}
    assert all(0.5 < r["head_score"] <= 1.0 for r in rows)
    assert "thumbnail" not in rows[0]  # out.thumbnails: false


def test_head_of_another_model_is_refused_at_config_time(trained_head):
    head_path = trained_head[0]
    with pytest.raises(ConfigError, match=r"tasks\.0: head was trained on mobilenet_v2:IMAGENET1K_V1 embeddings, not resnet18"):
        load_config(overrides={"tasks": [{"task": "head", "model": "resnet18", "head_path": str(head_path)}]})
    with pytest.raises(ConfigError, match="head_path: required"):
        load_config(overrides={"tasks": [{"task": "head"}]})


def test_labels_file_errors(tmp_path, kinds_output):
    bad = tmp_path / "labels.csv"
    bad.write_text("clip,kind\nx,y\n")
    with pytest.raises(ValueError, match="clip_id,label"):
        read_labels(bad)
    bad.write_text("clip_id,label\nnot-a-clip,stripes\n")
    result = CliRunner().invoke(app, ["train-head", str(kinds_output[0]), "--labels", str(bad), "-o", str(tmp_path / "h.pt")])
    assert result.exit_code == 2 and "not in" in result.stderr
