"""Temporal head kinds, `gru` and `tcn`: small torch sequence models over a clip's frame embeddings in time order.

A clip's mean embedding forgets the order of its frames (one image then another reads the same either way); these
heads read the frames/ table (out.frame_embeddings) instead. Each kind is one network class; training is the same
for both: a few epochs of AdamW on the CPU, class-balanced cross-entropy, a fixed seed. Clips may have different
frame counts (sample_fps, a short last clip): sequences are padded and each network ignores the padding.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from vidbatch.infer.head_registry import FRAMES_INPUT, register_head_kind

HIDDEN = 64
EPOCHS = 40
BATCH_CLIPS = 16
LEARNING_RATE = 2e-3
WEIGHT_DECAY = 1e-2
PREDICT_CLIPS = 1024  # clips per forward pass when predicting: bounds the padded batch's memory


@contextmanager
def one_thread() -> Iterator[None]:
    """These networks are tiny: torch's intra-op threads only add synchronisation. Measured here (2 shared cores,
    90 clips x 8 frames): the GRU trained in 46 s on 2 threads, 1.1 s on one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def pad_sequences(sequences: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, T_max, D) float32 zero-padded, and each sequence's length (N,)."""
    arrays = [np.asarray(s, np.float32) for s in sequences]
    lengths = torch.tensor([len(a) for a in arrays], dtype=torch.int64)
    if int(lengths.min()) < 1:
        raise ValueError("a clip without frame embeddings cannot go through a temporal head")
    x = torch.zeros(len(arrays), int(lengths.max()), arrays[0].shape[1])
    for i, a in enumerate(arrays):
        x[i, : len(a)] = torch.from_numpy(a)
    return x, lengths


class GRUNet(nn.Module):
    """Project each frame, run a GRU over the clip's frames, classify its last hidden state."""

    def __init__(self, input_dim: int, classes: int, hidden: int) -> None:
        super().__init__()
        self.proj = nn.Sequential(nn.Dropout(0.1), nn.Linear(input_dim, hidden), nn.ReLU())
        self.gru = nn.GRU(hidden, hidden, batch_first=True)
        self.out = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = nn.utils.rnn.pack_padded_sequence(self.proj(x), lengths, batch_first=True, enforce_sorted=False)
        _, last = self.gru(packed)
        return self.out(last[-1])


class TCNNet(nn.Module):
    """Two dilated 1-D convolutions over time (receptive field 7 frames), then mean and max over the clip's frames:
    a feature at t sees its neighbours, so "A then B" and "B then A" pool to different vectors."""

    def __init__(self, input_dim: int, classes: int, hidden: int) -> None:
        super().__init__()
        self.drop = nn.Dropout(0.1)
        self.conv1 = nn.Conv1d(input_dim, hidden, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(hidden, hidden, kernel_size=3, padding=2, dilation=2)
        self.out = nn.Linear(2 * hidden, classes)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        mask = (torch.arange(x.shape[1])[None, :] < lengths[:, None]).float()[:, None, :]  # (N, 1, T)
        h = torch.relu(self.conv1(self.drop(x).transpose(1, 2) * mask)) * mask
        h = h + torch.relu(self.conv2(h)) * mask
        mean = h.sum(dim=2) / lengths[:, None].float()
        peak = h.masked_fill(mask == 0, float("-inf")).amax(dim=2)
        return self.out(torch.cat([mean, peak], dim=1))


@dataclass(frozen=True)
class TemporalHead:
    """A sequence network's weights with its classes and embedding model; the network is built on first use."""

    kind: ClassVar[str]
    reads: ClassVar[str] = FRAMES_INPUT
    net_class: ClassVar[type[nn.Module]]
    class_names: list[str]
    embedding_model: str
    dim: int  # frame embedding size D
    hidden: int
    weights: dict[str, torch.Tensor] = field(repr=False)
    held_out_accuracy: float | None = None

    @property
    def input_dim(self) -> int:
        return self.dim

    @cached_property
    def net(self) -> nn.Module:
        net = self.net_class(self.dim, len(self.class_names), self.hidden)
        net.load_state_dict(self.weights)
        return net.eval()

    @torch.inference_mode()
    @one_thread()
    def probabilities(self, sequences: list[np.ndarray]) -> np.ndarray:
        probs = []
        for start in range(0, len(sequences), PREDICT_CLIPS):
            x, lengths = pad_sequences(sequences[start : start + PREDICT_CLIPS])
            probs.append(self.net(x, lengths).softmax(dim=1).numpy())
        return np.concatenate(probs) if probs else np.zeros((0, len(self.class_names)), np.float32)

    def state(self) -> dict[str, Any]:
        return {"dim": self.dim, "hidden": self.hidden, "weights": dict(self.weights)}

    @classmethod
    def from_state(
        cls, state: dict[str, Any], class_names: list[str], embedding_model: str, held_out_accuracy: float | None
    ) -> TemporalHead:
        return cls(class_names, embedding_model, int(state["dim"]), int(state["hidden"]), dict(state["weights"]), held_out_accuracy)

    @classmethod
    @one_thread()
    def fit(cls, inputs: list[np.ndarray], labels: list[str], embedding_model: str, seed: int) -> TemporalHead:
        classes = sorted(set(labels))
        y = torch.tensor([classes.index(label) for label in labels])
        x, lengths = pad_sequences(inputs)
        torch.manual_seed(seed)
        order = torch.Generator().manual_seed(seed)
        net = cls.net_class(x.shape[2], len(classes), HIDDEN)
        counts = torch.bincount(y, minlength=len(classes)).float()
        balance = len(y) / (len(classes) * counts)  # as scikit-learn's class_weight="balanced"
        optimiser = torch.optim.AdamW(net.parameters(), lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
        net.train()
        for _ in range(EPOCHS):
            for batch in torch.randperm(len(y), generator=order).split(BATCH_CLIPS):
                loss = nn.functional.cross_entropy(net(x[batch], lengths[batch]), y[batch], weight=balance)
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
        weights = {k: v.detach().clone() for k, v in net.state_dict().items()}
        return cls(classes, embedding_model, int(x.shape[2]), HIDDEN, weights)


@register_head_kind("gru")
class GRUHead(TemporalHead):
    net_class = GRUNet


@register_head_kind("tcn")
class TCNHead(TemporalHead):
    net_class = TCNNet
