"""Custom classifiers ("heads") trained on stored clip embeddings: logistic regression, applied without decoding.

A head file is a plain dict of tensors and strings (loadable with torch.load(weights_only=True)) that names the
embedding model it belongs to, so it is never applied to another model's embeddings.
"""
from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import dataclass
from datetime import datetime, UTC
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa
import torch

from vidbatch.embeddings import load_clip_embeddings
from vidbatch.schema import HEAD_PREDICTIONS
from vidbatch.commits import commit
from vidbatch.manifest import new_run_id
from vidbatch.outputs import commits, live_files
from vidbatch.storage import OutputStore

HEAD_FORMAT = "vidbatch-head-1"


@dataclass(frozen=True)
class LinearHead:
    class_names: list[str]
    embedding_model: str  # clips.model, e.g. "mobilenet_v2:IMAGENET1K_V1"
    weight: np.ndarray  # (C, D) float32
    bias: np.ndarray  # (C,) float32
    held_out_accuracy: float | None = None

    def probabilities(self, embeddings: np.ndarray) -> np.ndarray:
        """(N, C) softmax of the logits; for two classes this equals scikit-learn's sigmoid (see from_sklearn)."""
        logits = torch.as_tensor(np.asarray(embeddings, np.float32) @ self.weight.T + self.bias)
        return logits.softmax(dim=1).numpy()

    def check_model(self, model: str) -> None:
        if model != self.embedding_model:
            raise ValueError(
                f"head was trained on {self.embedding_model} embeddings, not {model}: train a head on this model's clips"
            )

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        torch.save(
            {
                "format": HEAD_FORMAT, "class_names": self.class_names, "embedding_model": self.embedding_model,
                "weight": torch.from_numpy(self.weight), "bias": torch.from_numpy(self.bias),
                "held_out_accuracy": self.held_out_accuracy,
            },
            buffer,
        )
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, name: str) -> LinearHead:
        try:
            d = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - any unpickling failure means "not a head file"
            raise ValueError(f"{name}: not a head file from `vidbatch train-head` ({type(e).__name__}: {e})") from None
        if not isinstance(d, dict) or d.get("format") != HEAD_FORMAT:
            raise ValueError(f"{name}: not a head file from `vidbatch train-head` (format {HEAD_FORMAT})")
        return cls(
            list(d["class_names"]), d["embedding_model"], d["weight"].numpy(), d["bias"].numpy(), d["held_out_accuracy"]
        )

    @classmethod
    def from_sklearn(cls, model: Any, scaler: Any, embedding_model: str, accuracy: float | None) -> LinearHead:
        """The scaler's (x - mean) / scale is folded into the weights, so the head stays one matrix on raw embeddings.
        Two classes: scikit-learn keeps one logit z (sigmoid); softmax over (-z/2, z/2) gives the same p."""
        coef = model.coef_ / scaler.scale_
        intercept = model.intercept_ - coef @ scaler.mean_
        coef, intercept = coef.astype(np.float32), intercept.astype(np.float32)
        if coef.shape[0] == 1:
            coef, intercept = np.concatenate([-coef / 2, coef / 2]), np.concatenate([-intercept / 2, intercept / 2])
        return cls([str(c) for c in model.classes_], embedding_model, coef, intercept, accuracy)


def read_head(path: str, storage_options: dict[str, Any] | None = None) -> tuple[LinearHead, str]:
    """The head and its id (sha1 of the file, 16 hex chars)."""
    try:
        with fsspec.open(path, "rb", **(storage_options or {})) as f:
            data = f.read()
    except FileNotFoundError:
        raise ValueError(f"{path}: head file does not exist") from None
    return LinearHead.from_bytes(data, path), hashlib.sha1(data).hexdigest()[:16]


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
    """Fit multinomial logistic regression on the labelled clips' embeddings; accuracy on a stratified hold-out."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler
    from sklearn.model_selection import train_test_split

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
    scaler = StandardScaler().fit(x_train)
    fitted = LogisticRegression(max_iter=1000, class_weight="balanced").fit(scaler.transform(x_train), y_train)
    accuracy = float(fitted.score(scaler.transform(x_test), y_test))
    head = LinearHead.from_sklearn(fitted, scaler, stored.model, accuracy)
    return TrainResult(head, len(y_train), len(y_test), accuracy)


def write_head(head: LinearHead, path: str, storage_options: dict[str, Any] | None = None) -> None:
    with fsspec.open(path, "wb", **(storage_options or {})) as f:
        f.write(head.to_bytes())


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


def apply_head(out: str, head_path: str, storage_options: dict[str, Any] | None = None) -> tuple[int, list[str]]:
    """Predict every stored clip of the head's embedding model into head_predictions/; returns (rows, files).

    Published like a run: written under `<head_id>/`, then committed, replacing this head's earlier predictions
    in the same commit, so readers see either the old predictions or the new ones.
    """
    head, head_id = read_head(head_path, storage_options)
    stored = load_clip_embeddings(out, ["video_id", "start_s", "end_s"], head.embedding_model, storage_options)
    table = predictions_table(head, head_id, stored.clips, stored.matrix)
    store = OutputStore(out, storage_options)
    run_id = f"head-{head_id}-{new_run_id()}"
    prefix = f"head_predictions/{head_id}/"
    earlier = [f for f in live_files(commits(store)).get("head_predictions", []) if f.startswith(prefix)]
    file = store.write_parquet(f"{prefix}part-{run_id}.parquet", table)
    commit(store, run_id, {"head_predictions": [file]}, earlier, {"head_id": head_id})
    return table.num_rows, [store.path(file)]
