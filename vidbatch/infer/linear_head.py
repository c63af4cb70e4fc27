"""The `linear` head kind: a linear classifier over one embedding model's clip embeddings.

Trained as a logistic regression on standardised embeddings, stored as one matrix on raw ones. Its file keeps
the format heads had before there were kinds (vidbatch/infer/head_registry.py). Trained by `vidbatch.read.heads`
(from batches streamed off the clips table: `fit_batches`), applied there or as the `head` task.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from vidbatch.infer.head_registry import (
    CLIP_INPUT,
    check_embedding_model,
    register_head_kind,
)


@register_head_kind("linear")
@dataclass(frozen=True)
class LinearHead:
    kind: ClassVar[str]
    reads: ClassVar[str] = CLIP_INPUT
    class_names: list[str]
    embedding_model: str  # clips.model, e.g. "mobilenet_v2:IMAGENET1K_V1"
    weight: np.ndarray  # (C, D) float32
    bias: np.ndarray  # (C,) float32
    held_out_accuracy: float | None = None

    @property
    def input_dim(self) -> int:
        return int(self.weight.shape[1])

    def probabilities(self, embeddings: np.ndarray | list[np.ndarray]) -> np.ndarray:
        """(N, C) softmax of the logits."""
        logits = torch.as_tensor(np.asarray(embeddings, np.float32) @ self.weight.T + self.bias)
        return logits.softmax(dim=1).numpy()

    def check_model(self, model: str) -> None:
        check_embedding_model(self, model)

    def state(self) -> dict[str, Any]:
        return {"weight": torch.from_numpy(self.weight), "bias": torch.from_numpy(self.bias)}

    @classmethod
    def from_state(
        cls, state: dict[str, Any], class_names: list[str], embedding_model: str, held_out_accuracy: float | None
    ) -> LinearHead:
        return cls(class_names, embedding_model, state["weight"].numpy(), state["bias"].numpy(), held_out_accuracy)

    @classmethod
    def fit(cls, inputs: list[np.ndarray], labels: list[str], embedding_model: str, seed: int) -> LinearHead:
        """fit_batches on inputs held in memory (one batch); seed: unused, the fit is deterministic."""
        classes = sorted(set(labels))
        y = np.searchsorted(classes, labels)
        return cls.fit_batches(lambda: [(np.asarray(inputs, np.float32), y)], classes, embedding_model)

    @classmethod
    def fit_batches(
        cls, batches: Callable[[], Iterable[tuple[np.ndarray, np.ndarray]]], classes: list[str], embedding_model: str,
        max_iter: int = 1000,
    ) -> LinearHead:
        """Class-balanced multinomial logistic regression with an L2 penalty (C=1) on standardised features: unit-
        norm embeddings give tiny logits that the penalty would flatten into "always the majority class" otherwise.
        scikit-learn's LogisticRegression(class_weight="balanced") objective, minimised by L-BFGS with the loss
        and gradient summed over `batches` (a function that yields (embeddings, class indices) anew on each
        call), so no more than one batch need be in memory. Deterministic, whatever the batches' order."""
        from scipy.optimize import minimize

        count, total, squares = np.zeros(len(classes)), 0.0, 0.0
        for x, y in batches():
            x = np.asarray(x, np.float64)
            count += np.bincount(y, minlength=len(classes))
            total, squares = total + x.sum(0), squares + (x * x).sum(0)
        n = count.sum()
        if (count == 0).any():
            raise ValueError(f"no labelled clips of class {classes[int(np.flatnonzero(count == 0)[0])]!r} to train on")
        mean = total / n
        scale = np.sqrt(np.maximum(squares / n - mean * mean, 0.0))
        scale[scale < 1e-12] = 1.0  # as StandardScaler: a constant feature is left unscaled
        weights = n / (len(classes) * count)  # class_weight="balanced"
        dim, k = len(mean), len(classes)

        def loss_and_grad(theta: np.ndarray) -> tuple[float, np.ndarray]:
            w, b = theta[: k * dim].reshape(k, dim), theta[k * dim :]
            loss, grad_w, grad_b = 0.5 * float((w * w).sum()), w.copy(), np.zeros(k)
            for x, y in batches():
                z = (np.asarray(x, np.float64) - mean) / scale
                logits = z @ w.T + b
                logits -= logits.max(axis=1, keepdims=True)
                log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
                s = weights[y]
                loss -= float((s * log_p[np.arange(len(y)), y]).sum())
                g = np.exp(log_p)
                g[np.arange(len(y)), y] -= 1.0
                g *= s[:, None]
                grad_w += g.T @ z
                grad_b += g.sum(axis=0)
            return loss, np.concatenate([grad_w.ravel(), grad_b])

        found = minimize(loss_and_grad, np.zeros(k * dim + k), jac=True, method="L-BFGS-B",
                         options={"maxiter": max_iter, "gtol": 1e-4})
        w, b = found.x[: k * dim].reshape(k, dim), found.x[k * dim :]
        coef = w / scale  # fold the standardisation into the weights: one matrix on raw embeddings
        intercept = b - coef @ mean
        return cls(list(classes), embedding_model, coef.astype(np.float32), intercept.astype(np.float32), None)
