"""Model and weights loading for every task: torchvision architectures with weights from the torch cache or a
checkpoint path/URL, and TorchScript files.

Models of the segment/detect/action tasks: a torchvision architecture of the task's family, or a TorchScript file.

`model: torchscript` loads `weights_path` with torch.jit.load: any model whose inputs and outputs follow the
torchvision contract of the task. A TorchScript file is code, so load only files you trust. Its class names and
preprocessing come from `weights` when that names a torchvision weights enum in full
(e.g. `R3D_18_Weights.KINETICS400_V1`), else classes are `class_<i>` and preprocessing is the task's default.
"""
from __future__ import annotations

import inspect
import io
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import fsspec
import torch
import torchvision
from torchvision.models import WeightsEnum

from vidbatch.config import TaskConfig


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


TORCHSCRIPT = "torchscript"


def check_family(cfg: TaskConfig, family: ModuleType, task: str) -> None:
    """A `segment` task given a classifier (e.g. the default mobilenet_v2) fails here, with the valid names."""
    if cfg.model == TORCHSCRIPT:
        if cfg.weights_path is None:
            raise ValueError("model torchscript needs weights_path (a file written by torch.jit.save)")
        return
    names = torchvision.models.list_models(module=family)
    if cfg.model not in names:
        raise ValueError(f"{task}: model {cfg.model!r} is not one of {names} (or {TORCHSCRIPT!r})")


def resolve_task_weights(cfg: TaskConfig) -> ResolvedWeights:
    if cfg.model != TORCHSCRIPT:
        return resolve_weights(cfg.model, cfg.weights)
    if cfg.weights is None:
        return ResolvedWeights(None, "random")
    try:
        enum = torchvision.models.get_weight(cfg.weights)
    except (KeyError, ValueError, AttributeError):
        raise ValueError(
            f"model torchscript: weights {cfg.weights!r} must be null or a full torchvision weights name "
            "such as 'R3D_18_Weights.KINETICS400_V1' (it supplies class names and preprocessing)"
        ) from None
    return ResolvedWeights(enum, enum.name)


def preset(cfg: TaskConfig, resolved: ResolvedWeights) -> Any | None:
    """The weights' transforms preset; random torchvision weights use the architecture's DEFAULT preset (metadata
    only, nothing is downloaded)."""
    if resolved.enum is not None:
        return resolved.enum.transforms()
    if cfg.model == TORCHSCRIPT:
        return None
    return torchvision.models.get_model_weights(cfg.model).DEFAULT.transforms()


def model_label(cfg: TaskConfig, resolved: ResolvedWeights) -> str:
    return f"{cfg.model}:{resolved.label}"


def load_task_model(
    cfg: TaskConfig, resolved: ResolvedWeights, storage_options: dict[str, Any] | None = None, **kwargs: Any
) -> torch.nn.Module:
    """kwargs go to the torchvision builder only where it takes them (weights_backbone=None: no backbone download)."""
    if cfg.model == TORCHSCRIPT:
        with fsspec.open(cfg.weights_path, "rb", **(storage_options or {})) as f:
            buffer = io.BytesIO(f.read())
        return torch.jit.load(buffer, map_location="cpu").eval()
    params = inspect.signature(torchvision.models.get_model_builder(cfg.model)).parameters
    with_aux = "aux_loss" in params and resolved.enum is not None
    if with_aux:
        kwargs["aux_loss"] = True  # torchvision's segmentation checkpoints carry the auxiliary head
    kwargs = {k: v for k, v in kwargs.items() if k in params}
    net = build_torchvision_model(cfg.model, resolved, cfg.weights_path, storage_options, **kwargs)
    if with_aux:
        net.aux_classifier = None  # loaded so the checkpoint matches; a training-only output, never read here
    return net


def categories(resolved: ResolvedWeights, n: int) -> list[str]:
    names = resolved.categories or []
    return names if len(names) == n else [f"class_{i}" for i in range(n)]
