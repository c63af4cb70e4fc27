"""Build torchvision models with weights from the normal torch cache or from a checkpoint path/URL."""
from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import fsspec
import torch
import torchvision
from torchvision.models import WeightsEnum


@dataclass(frozen=True)
class ResolvedWeights:
    enum: WeightsEnum | None  # torchvision weights: categories and preprocessing, even when loading from a path
    label: str  # recorded in outputs, e.g. "IMAGENET1K_V1"

    @property
    def categories(self) -> list[str] | None:
        return None if self.enum is None else list(self.enum.meta.get("categories") or []) or None


def resolve_weights(model: str, weights: str | None) -> ResolvedWeights:
    """Accept 'DEFAULT', a member name ('IMAGENET1K_V1') or a full name ('MobileNet_V2_Weights.IMAGENET1K_V1')."""
    if weights is None:
        return ResolvedWeights(None, "random")
    enum_cls = torchvision.models.get_model_weights(model)
    try:
        enum = torchvision.models.get_weight(weights) if "." in weights else enum_cls[weights]
    except (KeyError, ValueError):
        enum = None
    if not isinstance(enum, enum_cls):
        raise ValueError(f"{model} has no weights {weights!r}; choose from {list(enum_cls.__members__)}")
    return ResolvedWeights(enum, enum.name)


def load_state_dict(path: str, storage_options: dict[str, Any] | None = None) -> dict[str, torch.Tensor]:
    """weights_only=True: a checkpoint is data, never code."""
    with fsspec.open(path, "rb", **(storage_options or {})) as f:
        buffer = io.BytesIO(f.read())
    state = torch.load(buffer, map_location="cpu", weights_only=True)
    return state.get("state_dict", state) if isinstance(state, dict) else state


def build_torchvision_model(
    model: str,
    weights: ResolvedWeights,
    weights_path: str | None,
    storage_options: dict[str, Any] | None = None,
    **kwargs: Any,
) -> torch.nn.Module:
    builder = torchvision.models.get_model_builder(model)
    if weights_path is not None:
        if weights.categories:
            kwargs.setdefault("num_classes", len(weights.categories))
        net = builder(weights=None, **kwargs)
        net.load_state_dict(load_state_dict(weights_path, storage_options))
    else:
        net = builder(weights=weights.enum, **kwargs)  # torch hub cache; downloads on first use
    return net.eval()
