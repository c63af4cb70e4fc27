"""Custom classifiers ("heads") trained on stored embeddings and applied without decoding: linear heads on the
clips' embeddings, temporal heads (gru, tcn) on their frames' embeddings in time order (vidbatch/infer/head_registry.py).

A head file is a plain dict of tensors and strings (loadable with torch.load(weights_only=True)) that names the
embedding model it belongs to, so it is never applied to another model's embeddings.
"""
from __future__ import annotations

import csv
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vidbatch.core.schema import HEAD_PREDICTIONS
from vidbatch.infer.head_files import HEAD_KINDS, ClipHead, get_head_kind, read_head
from vidbatch.infer.head_registry import CLIP_INPUT, FRAMES_INPUT
from vidbatch.infer.linear_head import LinearHead
from vidbatch.read.embeddings import (
    StoredFrames,
    clip_batches,
    embedded_clips,
    pick_model,
    stored_models,
)
from vidbatch.store.committed import record_snapshot
from vidbatch.store.delta import (
    commit_table,
    delta_storage_options,
    in_predicate,
    open_table,
)
from vidbatch.store.manifest import new_run_id


def read_labels(path: str | Path) -> dict[str, str]:
    """labels.csv: a header with `clip_id` and `label` columns, one clip per row."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = {"clip_id", "label"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{path}: needs a header with columns clip_id,label (missing {sorted(missing)})")
        labels = {}
        for line, row in enumerate(reader, start=2):
            if not row["clip_id"] or not row["label"]:
                raise ValueError(f"{path}:{line}: empty clip_id or label")
            labels[row["clip_id"].strip()] = row["label"].strip()
    return labels


@dataclass(frozen=True)
class LabelledInputs:
    clip_ids: list[str]
    inputs: list[np.ndarray]  # what the head kind reads, per clip
    model: str  # clips.model that made them


class LabelledClips:
    """The labelled clips' embeddings as batches off the clips table (only their rows and the embedding column are
    read). Training passes over them once per L-BFGS step, so they are kept in memory when they fit in
    MEMORY_BYTES and read again on each pass beyond that: memory stays bounded whatever the number of labels."""

    MEMORY_BYTES = 512 << 20

    def __init__(self, out: str, clip_ids: list[str], model: str | None, storage_options: dict[str, Any] | None):
        self.ds = embedded_clips(out, storage_options)
        self.model = pick_model(out, stored_models(self.ds), model)
        found: set[str] = set()
        for batch, _ in self._read(clip_ids):
            found.update(batch["clip_id"].to_pylist())
        unknown = [cid for cid in clip_ids if cid not in found]
        if unknown:
            raise ValueError(f"{len(unknown)} labelled clip ids are not in {out}/clips, e.g. {unknown[:3]}")

    def _read(self, clip_ids: list[str]) -> Iterator[tuple[pa.RecordBatch, np.ndarray]]:
        yield from clip_batches(self.ds, self.model, [], only=pc.field("clip_id").isin(sorted(clip_ids)))

    def batches(self, labels: dict[str, int]) -> Callable[[], Iterable[tuple[np.ndarray, np.ndarray]]]:
        """A function that yields (embeddings, class index) of the clips in `labels`, a batch at a time."""
        cache: list[tuple[np.ndarray, np.ndarray]] | None = None

        def read() -> Iterator[tuple[np.ndarray, np.ndarray]]:
            for batch, matrix in self._read(list(labels)):
                yield matrix, np.array([labels[c] for c in batch["clip_id"].to_pylist()], np.int64)

        def passes() -> Iterable[tuple[np.ndarray, np.ndarray]]:
            nonlocal cache
            if cache is not None:
                return cache
            size, kept = 0, []
            for x, y in read():
                size += x.nbytes
                kept.append((x, y))
                if size > self.MEMORY_BYTES:
                    return read()  # too many to hold: every pass reads them again
            cache = kept
            return cache

        return passes


def _frame_inputs(out: str, clip_ids: list[str], model: str | None, storage_options: dict[str, Any] | None) -> LabelledInputs:
    stored = StoredFrames(out, model, storage_options, clip_ids)
    clips, sequences = stored.sequences()
    by_id = dict(zip(clips["clip_id"].to_pylist(), sequences))
    missing = [cid for cid in clip_ids if cid not in by_id]
    if missing:
        raise ValueError(
            f"{len(missing)} labelled clip ids have no frames in {out}/frames (not in clips/, or processed without "
            f"out.frame_embeddings), e.g. {missing[:3]}"
        )
    return LabelledInputs(clip_ids, [by_id[c] for c in clip_ids], stored.model)


# what a temporal head kind reads: the labelled clips' frame sequences (clip heads stream: LabelledClips)
LABELLED_INPUTS = {FRAMES_INPUT: _frame_inputs}


def temporal_kinds() -> list[str]:
    """Head kinds that read frame sequences (train-head --temporal)."""
    return sorted(k for k, cls in HEAD_KINDS.items() if cls.reads == FRAMES_INPUT)


@dataclass(frozen=True)
class TrainResult:
    head: ClipHead
    train_clips: int
    test_clips: int
    held_out_accuracy: float
    train_seconds: float  # fitting the head whose held-out accuracy is reported
    baseline_accuracy: float | None = None  # compare: a linear head on the clip embeddings, same split
    baseline_seconds: float | None = None


def _accuracy(head: ClipHead, inputs: list[np.ndarray], labels: np.ndarray) -> float:
    predicted = np.asarray(head.class_names)[head.probabilities(inputs).argmax(axis=1)]
    return float((predicted == labels).mean())


def _held_out(
    kind: type[ClipHead], data: LabelledInputs, y: np.ndarray, train: np.ndarray, test: np.ndarray, seed: int
) -> tuple[float, float]:
    """(accuracy on the test clips, seconds) of a head of `kind` fitted on the train clips."""
    started = time.perf_counter()
    head = kind.fit([data.inputs[i] for i in train], y[train].tolist(), data.model, seed)
    seconds = time.perf_counter() - started
    return _accuracy(head, [data.inputs[i] for i in test], y[test]), seconds


def _held_out_streamed(
    clips: LabelledClips, ids: list[str], y: np.ndarray, classes: list[str], train: np.ndarray, test: np.ndarray
) -> tuple[float, float]:
    """_held_out of a linear head, fitted and scored on batches streamed from the clips table."""
    index = {c: i for i, c in enumerate(classes)}
    started = time.perf_counter()
    head = LinearHead.fit_batches(clips.batches({ids[i]: index[y[i]] for i in train}), classes, clips.model)
    seconds = time.perf_counter() - started
    right = total = 0
    for x, truth in clips.batches({ids[i]: index[y[i]] for i in test})():
        right += int((head.probabilities(x).argmax(axis=1) == truth).sum())
        total += len(truth)
    return right / total, seconds


def train_head(
    out: str, labels: dict[str, str], test_fraction: float = 0.25, seed: int = 0,
    model: str | None = None, storage_options: dict[str, Any] | None = None, kind: str = "linear",
    compare: bool = False,
) -> TrainResult:
    """A head of `kind` on the labelled clips: the accuracy comes from a fit on a stratified split, the saved head
    from a fit on all of them. compare: a linear head on the clips' embeddings is fitted on the same split too.
    A linear head streams the labelled clips' embeddings from the table (LabelledClips)."""
    from sklearn.model_selection import train_test_split

    head_kind = get_head_kind(kind)
    ids = list(labels)
    streamed = head_kind.reads == CLIP_INPUT
    clips = LabelledClips(out, ids, model, storage_options) if streamed or compare else None  # checks the ids
    data = None if streamed else LABELLED_INPUTS[head_kind.reads](out, ids, model if clips is None else clips.model, storage_options)
    classes = sorted(set(labels.values()))
    if len(classes) < 2:
        raise ValueError(f"labels: need at least two classes, got {classes}")
    y = np.array([labels[c] for c in ids])
    n_test = max(len(classes), round(len(ids) * test_fraction))
    if len(ids) - n_test < len(classes):
        raise ValueError(f"labels: {len(ids)} clips are too few to train and hold out {n_test} for {len(classes)} classes")
    train, test = train_test_split(np.arange(len(ids)), test_size=n_test, stratify=y, random_state=seed)
    if data is None:
        accuracy, seconds = _held_out_streamed(clips, ids, y, classes, train, test)
        head = LinearHead.fit_batches(clips.batches({c: classes.index(labels[c]) for c in ids}), classes, clips.model)
    else:
        accuracy, seconds = _held_out(head_kind, data, y, train, test, seed)
        head = head_kind.fit(data.inputs, y.tolist(), data.model, seed)
    baseline = baseline_seconds = None
    if compare:
        baseline, baseline_seconds = _held_out_streamed(clips, ids, y, classes, train, test)
    # the accuracy estimates the held-out error; the saved head then learns from every labelled clip
    head = replace(head, held_out_accuracy=accuracy)
    return TrainResult(head, len(train), len(test), accuracy, seconds, baseline, baseline_seconds)


def predictions_table(head: ClipHead, head_id: str, clips: pa.Table, probs: np.ndarray) -> pa.Table:
    best = probs.argmax(axis=1)
    n = clips.num_rows
    return pa.table(
        {
            "video_id": clips["video_id"], "clip_id": clips["clip_id"], "start_s": clips["start_s"], "end_s": clips["end_s"],
            "head_id": [head_id] * n, "embedding_model": [head.embedding_model] * n,
            "label": [head.class_names[i] for i in best], "score": probs[np.arange(n), best],
            "class_names": [head.class_names] * n, "scores": list(probs),
            "applied_at": pa.array([datetime.now(UTC)] * n, pa.timestamp("us", tz="UTC")),
        }
    ).cast(HEAD_PREDICTIONS)


PREDICTED_COLUMNS = ("video_id", "start_s", "end_s")


def _check_dim(head: ClipHead, head_path: str, dim: int) -> None:
    if head.input_dim != dim:
        raise ValueError(f"{head_path}: the head takes {head.input_dim}-dimensional embeddings, the stored ones have {dim}")


def _stored_clip_inputs(
    out: str, head: ClipHead, head_path: str, storage_options: dict[str, Any] | None
) -> Iterator[tuple[pa.Table, list[np.ndarray]]]:
    ds = embedded_clips(out, storage_options)
    pick_model(out, stored_models(ds), head.embedding_model)
    for batch, matrix in clip_batches(ds, head.embedding_model, ["video_id", *PREDICTED_COLUMNS]):
        _check_dim(head, head_path, matrix.shape[1])
        yield pa.Table.from_batches([batch]), matrix


def _stored_frame_inputs(
    out: str, head: ClipHead, head_path: str, storage_options: dict[str, Any] | None
) -> Iterator[tuple[pa.Table, list[np.ndarray]]]:
    frames = StoredFrames(out, head.embedding_model, storage_options, columns=PREDICTED_COLUMNS)
    for clips, sequences in frames.batches():
        _check_dim(head, head_path, sequences[0].shape[1])
        yield clips, sequences


# what a head kind reads -> every stored clip's inputs, in batches
STORED_INPUTS = {CLIP_INPUT: _stored_clip_inputs, FRAMES_INPUT: _stored_frame_inputs}


def apply_head(out: str, head_path: str, storage_options: dict[str, Any] | None = None) -> tuple[int, int]:
    """Predict every stored clip of the head's embedding model into head_predictions; returns (rows, version).

    One commit replaces this head's earlier predictions, so readers see either the old predictions or the new ones;
    a manifest records the table versions, so readers' snapshots include it.
    """
    head, head_id = read_head(head_path, storage_options)
    parts = [
        predictions_table(head, head_id, clips, head.probabilities(inputs))
        for clips, inputs in STORED_INPUTS[head.reads](out, head, head_path, storage_options)
    ]
    table = pa.concat_tables(parts) if parts else HEAD_PREDICTIONS.empty_table()
    options = delta_storage_options(out, storage_options)
    run_id = f"head-{head_id}-{new_run_id()}"  # names the commit in the table's history
    app_id = f"vidbatch-head-{head_id}"
    existing = open_table(out, "head_predictions", options)
    seq = 1 + ((existing.transaction_version(app_id) or 0) if existing is not None else 0)
    version = commit_table(
        out, "head_predictions", table, app_id=app_id, seq=seq, options=options,
        replace=in_predicate("head_id", [head_id]), metadata={"run_id": run_id},
    )
    record_snapshot(out, storage_options, "apply-head", head_id=head_id, head_path=head_path, rows=table.num_rows)
    return table.num_rows, version
