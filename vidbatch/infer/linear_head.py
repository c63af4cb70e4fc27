"""The head file format: a linear classifier over one embedding model's clip embeddings.

A head file is a plain dict of tensors and strings (loadable with torch.load(weights_only=True)) that names the
embedding model it belongs to, so it is never applied to another model's embeddings. Trained by
`vidbatch.read.heads`, applied there or as the `head` task.
"""
from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from typing import Any

import fsspec
import numpy as np
import torch

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


def write_head(head: LinearHead, path: str, storage_options: dict[str, Any] | None = None) -> None:
    with fsspec.open(path, "wb", **(storage_options or {})) as f:
        f.write(head.to_bytes())
