"""Head kinds: a head is one class registered by kind (`linear`, `gru`, `tcn`); the file format is shared.

A head classifies clips from the embeddings the job stored: `reads` says which, the clip's embedding (one
vector) or its frames' embeddings in time order (a sequence). A head file is a plain dict of tensors, strings
and numbers (loadable with torch.load(weights_only=True)) that names its kind and the embedding model it belongs
to, so it is never applied to another model's embeddings. This module is the API and imports no kind;
`vidbatch.infer.head_files` imports them all (torchvision's models/_api.py shape).
"""
from __future__ import annotations

import io
from typing import Any, ClassVar, Literal, Protocol

import numpy as np
import torch

from vidbatch.core.registry import Registry

HEAD_FORMAT = "vidbatch-head-1"  # linear heads; files from before head kinds have no `kind` key
HEAD_FORMAT_KINDS = "vidbatch-head-2"  # other kinds: versions that know only linear heads refuse them
CLIP_INPUT, FRAMES_INPUT = "embedding", "frame_embeddings"


class ClipHead(Protocol):
    kind: ClassVar[str]
    # "embedding": one (D,) vector per clip; "frame_embeddings": one (T, D) array per clip, its frames in time order
    reads: ClassVar[Literal["embedding", "frame_embeddings"]]
    class_names: list[str]
    embedding_model: str  # clips.model, e.g. "mobilenet_v2:IMAGENET1K_V1"
    held_out_accuracy: float | None

    @property
    def input_dim(self) -> int: ...

    def probabilities(self, inputs: list[np.ndarray]) -> np.ndarray:
        """(N, C) class probabilities of N clips' inputs (what `reads` names)."""
        ...

    def state(self) -> dict[str, Any]:
        """The kind's own part of the head file: tensors, strings and numbers only."""
        ...

    @classmethod
    def from_state(
        cls, state: dict[str, Any], class_names: list[str], embedding_model: str, held_out_accuracy: float | None
    ) -> ClipHead: ...

    @classmethod
    def fit(cls, inputs: list[np.ndarray], labels: list[str], embedding_model: str, seed: int) -> ClipHead:
        """Train on the clips' inputs and their labels (at least two classes)."""
        ...


HEAD_KINDS: Registry[type[ClipHead]] = Registry("head kind", attr="kind", missing=ValueError)
register_head_kind = HEAD_KINDS.register
get_head_kind = HEAD_KINDS.lookup


def check_embedding_model(head: ClipHead, model: str) -> None:
    if model != head.embedding_model:
        raise ValueError(
            f"head was trained on {head.embedding_model} embeddings, not {model}: train a head on this model's clips"
        )


def head_to_bytes(head: ClipHead) -> bytes:
    buffer = io.BytesIO()
    torch.save(
        {
            "format": HEAD_FORMAT if head.kind == "linear" else HEAD_FORMAT_KINDS, "kind": head.kind,
            "class_names": list(head.class_names), "embedding_model": head.embedding_model,
            "held_out_accuracy": head.held_out_accuracy, **head.state(),
        },
        buffer,
    )
    return buffer.getvalue()


def head_from_bytes(data: bytes, name: str) -> ClipHead:
    try:
        d = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means "not a head file"
        raise ValueError(f"{name}: not a head file from `vidbatch train-head` ({type(e).__name__}: {e})") from None
    if not isinstance(d, dict) or d.get("format") not in (HEAD_FORMAT, HEAD_FORMAT_KINDS):
        raise ValueError(f"{name}: not a head file from `vidbatch train-head` (format {HEAD_FORMAT_KINDS})")
    kind = get_head_kind(d.get("kind", "linear"))
    return kind.from_state(d, list(d["class_names"]), d["embedding_model"], d["held_out_accuracy"])
