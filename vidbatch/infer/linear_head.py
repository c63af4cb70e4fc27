"""The `linear` head kind: a linear classifier over one embedding model's clip embeddings.

Trained as a logistic regression (scikit-learn) on standardised embeddings, stored as one matrix on raw ones.
Its file keeps the format heads had before there were kinds (vidbatch/infer/head_registry.py). Trained by
`vidbatch.read.heads`, applied there or as the `head` task.
"""
from __future__ import annotations

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
        """(N, C) softmax of the logits; for two classes this equals scikit-learn's sigmoid (see from_sklearn)."""
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
        """Multinomial logistic regression. Unit-norm embeddings give tiny logits that the default L2 penalty
        flattens into "always the majority class": the features are standardised (folded into the weights) and
        the classes balanced."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import StandardScaler

        x = np.asarray(inputs, np.float32)
        scaler = StandardScaler().fit(x)
        model = LogisticRegression(max_iter=1000, class_weight="balanced", random_state=seed)
        return cls.from_sklearn(model.fit(scaler.transform(x), np.asarray(labels)), scaler, embedding_model, None)

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
