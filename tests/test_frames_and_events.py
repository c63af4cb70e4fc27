"""Without Ray: the frames table's rows and commits, head kinds and their file format, merging clips into events."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch

from vidbatch.config import ConfigError
from vidbatch.core.schema import CLIP_KEY_FIELDS, ERRORS, FRAME_EMBEDDINGS_FIELD, FRAMES, LEDGER, VIDEOS, clips_schema
from vidbatch.core.storage import OutputStore
from vidbatch.infer.head_files import HEAD_KINDS, get_head_kind
from vidbatch.infer.head_registry import HEAD_FORMAT, head_from_bytes, head_to_bytes
from vidbatch.job import load_config
from vidbatch.read.events import merge_events
from vidbatch.store.committed import read_table
from vidbatch.store.fingerprint import pipeline_identity
from vidbatch.store.publish import RunTables, publish
from vidbatch.store.tables import frames_table


def result_rows(video_id: str, clips: int, frames: int, dim: int = 4) -> pa.Table:
    """Result rows as the actor hands them to the driver: clip keys and per-frame embeddings."""
    rng = np.random.default_rng(len(video_id))
    rows = []
    for c in range(clips):
        times = [c + f / frames for f in range(frames)]
        rows.append({
            "video_id": video_id, "video_uri": f"/v/{video_id}.mp4", "clip_id": f"{video_id}-{c}", "clip_index": c,
            "start_s": float(c), "end_s": c + 1.0, "frame_times_s": times,
            FRAME_EMBEDDINGS_FIELD.name: [rng.standard_normal(dim).astype(np.float32) for _ in times],
        })
    return pa.Table.from_pylist(rows, schema=pa.schema([*CLIP_KEY_FIELDS, FRAME_EMBEDDINGS_FIELD]))


def test_frames_rows_follow_the_clips_frames_in_order():
    clips = result_rows("va", clips=2, frames=3)
    frames = frames_table(clips, "pipe", "run1")
    assert frames.schema.equals(FRAMES, check_metadata=True)
    rows = frames.to_pylist()
    assert [(r["clip_id"], r["frame_index"]) for r in rows] == [("va-0", 0), ("va-0", 1), ("va-0", 2), ("va-1", 0), ("va-1", 1), ("va-1", 2)]
    assert [r["time_s"] for r in rows] == [t for c in clips["frame_times_s"].to_pylist() for t in c]
    sent = clips[FRAME_EMBEDDINGS_FIELD.name].to_pylist()
    assert [r["embedding"] for r in rows] == [f for c in sent for f in c]
    assert {r["run_id"] for r in rows} == {"run1"} and {r["pipeline"] for r in rows} == {"pipe"}


def _publish(store: OutputStore, seq: int, frame_files: list[str], replace: set[str], writes_frames: bool) -> None:
    schema = clips_schema([])
    tables = RunTables(
        clip_files=[], clip_schema=schema, shot_file=None, shot_schema=None, replace_ids=replace,
        videos=VIDEOS.empty_table(), errors=ERRORS.empty_table(), ledger=LEDGER.empty_table(),
        frame_files=frame_files, writes_frames=writes_frames,
    )
    publish(store, None, "vidbatch-job", seq, f"r{seq}", tables)


def test_frames_are_committed_and_replaced_with_their_videos(tmp_path: Path):
    store = OutputStore(str(tmp_path))
    files = [store.write_parquet(f"_staging/r1/units/{v}.frames.parquet", frames_table(result_rows(v, 2, 3), "p", "r1"))
             for v in ("va", "vb")]
    _publish(store, 1, files, {"va", "vb"}, writes_frames=True)
    assert read_table(str(tmp_path), "frames").num_rows == 12
    # a later run that re-processes va without frames: va's frames go with its old clips, vb's stay
    _publish(store, 2, [], {"va"}, writes_frames=False)
    left = read_table(str(tmp_path), "frames")
    assert set(left["video_id"].to_pylist()) == {"vb"} and left.num_rows == 6


def test_frame_embeddings_need_an_embedding_task_and_change_the_fingerprint_only_when_on():
    with pytest.raises(ConfigError, match="out.frame_embeddings: needs a task that makes embeddings"):
        load_config(overrides={"tasks": [], "out": {"frame_embeddings": True}})
    off, on = load_config(), load_config(overrides={"out": {"frame_embeddings": True}})
    assert "frame_embeddings" not in pipeline_identity(off) and pipeline_identity(on)["frame_embeddings"] is True
    assert load_config(overrides={"tasks": [{"task": "embed"}], "out": {"frame_embeddings": True}}).out.frame_embeddings


def ordered_sequences(n: int, seed: int = 0, dim: int = 32) -> tuple[list[np.ndarray], list[str]]:
    """n clips of 4 frames of pattern A then 4 of B, or B then A, plus noise; labelled by which comes first."""
    a, b = np.random.default_rng(99).standard_normal((2, dim))  # the same two patterns in every set
    rng = np.random.default_rng(seed)
    sequences, labels = [], []
    for i in range(n):
        first, second = (a, b) if i % 2 else (b, a)
        clip = np.stack([first] * 4 + [second] * 4) + 0.3 * rng.standard_normal((8, dim))
        sequences.append(clip.astype(np.float32))
        labels.append("a_first" if i % 2 else "b_first")
    return sequences, labels


@pytest.mark.parametrize("kind", ["gru", "tcn"])
def test_temporal_kinds_learn_the_order_that_a_mean_forgets(kind: str):
    train, train_labels = ordered_sequences(64, seed=1)
    test, test_labels = ordered_sequences(32, seed=2)
    head = get_head_kind(kind).fit(train, train_labels, "m:w", seed=0)
    predicted = np.asarray(head.class_names)[head.probabilities(test).argmax(axis=1)]
    assert (predicted == np.asarray(test_labels)).mean() >= 0.95
    linear = get_head_kind("linear").fit([s.mean(axis=0) for s in train], train_labels, "m:w", seed=0)
    guessed = np.asarray(linear.class_names)[linear.probabilities([s.mean(axis=0) for s in test]).argmax(axis=1)]
    assert (guessed == np.asarray(test_labels)).mean() <= 0.75

    # the file: plain tensors and numbers (weights_only), read back to the same predictions; variable lengths too
    data = head_to_bytes(head)
    assert isinstance(torch.load(io.BytesIO(data), weights_only=True)["weights"], dict)
    again = head_from_bytes(data, "head.pt")
    assert type(again) is type(head) and again.class_names == head.class_names
    mixed = [test[0], test[1][:5], test[2][:1]]
    assert np.allclose(again.probabilities(mixed), head.probabilities(mixed), atol=1e-6)
    assert np.allclose(head.probabilities(mixed)[:1], head.probabilities(test[:1]), atol=1e-6)  # padding is ignored


def test_head_files_name_their_kind_and_old_linear_files_still_read():
    assert {"linear", "gru", "tcn"} <= set(HEAD_KINDS)
    old = io.BytesIO()  # a linear head file as vidbatch wrote them before head kinds
    torch.save({"format": HEAD_FORMAT, "class_names": ["x", "y"], "embedding_model": "m:w", "weight": torch.ones(2, 3),
                "bias": torch.zeros(2), "held_out_accuracy": 0.9}, old)
    head = head_from_bytes(old.getvalue(), "old.pt")
    assert head.kind == "linear" and head.input_dim == 3 and head.held_out_accuracy == 0.9
    unknown = io.BytesIO()
    torch.save({"format": "vidbatch-head-2", "kind": "lstm9", "class_names": [], "embedding_model": "m", "held_out_accuracy": None}, unknown)
    with pytest.raises(ValueError, match="unknown head kind 'lstm9'"):
        head_from_bytes(unknown.getvalue(), "x.pt")
    with pytest.raises(ValueError, match="not a head file"):
        head_from_bytes(b"not a torch file", "x.pt")


def test_consecutive_clips_with_one_label_merge_into_events():
    rows = [("v1", 0, "red", 0.9), ("v1", 1, "red", 0.7), ("v1", 2, "blue", 0.8), ("v1", 3, "red", 0.6),
            ("v2", 0, "blue", 0.5), ("v2", 1, "blue", 0.7)]
    clips = pa.table({
        "video_id": [r[0] for r in rows], "video_uri": [f"/{r[0]}.mp4" for r in rows],
        "start_s": [r[1] * 2.0 for r in rows], "end_s": [r[1] * 2.0 + 2 for r in rows],
        "label": [r[2] for r in rows], "score": [r[3] for r in rows],
    }).take([5, 3, 0, 2, 4, 1])  # any order in
    events = merge_events(clips)
    assert [(e["video_id"], e["event_index"], e["start_s"], e["end_s"], e["label"], e["clip_count"]) for e in events] == [
        ("v1", 0, 0.0, 4.0, "red", 2), ("v1", 1, 4.0, 6.0, "blue", 1), ("v1", 2, 6.0, 8.0, "red", 1),
        ("v2", 0, 0.0, 4.0, "blue", 2),
    ]
    assert events[0]["score"] == pytest.approx(0.8) and events[3]["score"] == pytest.approx(0.6)
    longer = merge_events(clips, min_seconds=3.0)
    assert [(e["video_id"], e["event_index"], e["label"]) for e in longer] == [("v1", 0, "red"), ("v2", 0, "blue")]
