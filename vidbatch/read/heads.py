"""Custom classifiers ("heads") trained on stored clip embeddings: logistic regression, applied without decoding.

A head file is a plain dict of tensors and strings (loadable with torch.load(weights_only=True)) that names the
embedding model it belongs to, so it is never applied to another model's embeddings.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from vidbatch.core.schema import HEAD_PREDICTIONS
from vidbatch.infer.linear_head import LinearHead, read_head
from vidbatch.read.embeddings import load_clip_embeddings
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
class TrainResult:
    head: LinearHead
    train_clips: int
    test_clips: int
    held_out_accuracy: float


def train_head(
    out: str, labels: dict[str, str], test_fraction: float = 0.25, seed: int = 0,
    model: str | None = None, storage_options: dict[str, Any] | None = None,
) -> TrainResult:
    """Multinomial logistic regression on the labelled clips' embeddings: the accuracy comes from a fit on a
    stratified split, the saved head from a fit on all of them."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    stored = load_clip_embeddings(out, [], model, storage_options)
    index = {cid: i for i, cid in enumerate(stored.clips["clip_id"].to_pylist())}
    unknown = [cid for cid in labels if cid not in index]
    if unknown:
        raise ValueError(f"{len(unknown)} labelled clip ids are not in {out}/clips, e.g. {unknown[:3]}")
    classes = sorted(set(labels.values()))
    if len(classes) < 2:
        raise ValueError(f"labels: need at least two classes, got {classes}")
    ids = list(labels)
    x = stored.matrix[[index[c] for c in ids]]
    y = np.array([labels[c] for c in ids])
    n_test = max(len(classes), round(len(ids) * test_fraction))
    if len(ids) - n_test < len(classes):
        raise ValueError(f"labels: {len(ids)} clips are too few to train and hold out {n_test} for {len(classes)} classes")
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=n_test, stratify=y, random_state=seed)
    # unit-norm embeddings give tiny logits that the default L2 penalty flattens into "always the majority class":
    # standardise the features (folded into the linear head below) and balance the classes
    def fit(xs: np.ndarray, ys: np.ndarray) -> tuple[Any, Any]:
        scaler = StandardScaler().fit(xs)
        return LogisticRegression(max_iter=1000, class_weight="balanced").fit(scaler.transform(xs), ys), scaler

    fitted, scaler = fit(x_train, y_train)
    accuracy = float(fitted.score(scaler.transform(x_test), y_test))
    # the accuracy estimates the held-out error; the saved head then learns from every labelled clip
    fitted, scaler = fit(x, y)
    head = LinearHead.from_sklearn(fitted, scaler, stored.model, accuracy)
    return TrainResult(head, len(y_train), len(y_test), accuracy)


def predictions_table(head: LinearHead, head_id: str, clips: pa.Table, embeddings: np.ndarray) -> pa.Table:
    probs = head.probabilities(embeddings)
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


def apply_head(out: str, head_path: str, storage_options: dict[str, Any] | None = None) -> tuple[int, int]:
    """Predict every stored clip of the head's embedding model into head_predictions; returns (rows, version).

    One commit replaces this head's earlier predictions, so readers see either the old predictions or the new ones;
    a manifest records the table versions, so readers' snapshots include it.
    """
    head, head_id = read_head(head_path, storage_options)
    stored = load_clip_embeddings(out, ["video_id", "start_s", "end_s"], head.embedding_model, storage_options)
    if head.weight.shape[1] != stored.matrix.shape[1]:
        raise ValueError(
            f"{head_path}: the head takes {head.weight.shape[1]}-dimensional embeddings, the stored ones have "
            f"{stored.matrix.shape[1]}"
        )
    table = predictions_table(head, head_id, stored.clips, stored.matrix)
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
