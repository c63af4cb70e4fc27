"""Nearest clips by cosine similarity of stored embeddings to a clip, an image, or a frame of a video.

Stored embeddings are L2-normalised, so cosine similarity is a dot product: one pass over the matrix (memory
bandwidth bound) and argpartition instead of a full sort. Rows go through in blocks of about a million, which
bounds the scores' memory on any archive size; smaller blocks were slower (more BLAS calls, measured in
benchmarks/README.md).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import av
import numpy as np
import torch

from vidbatch.config import TaskConfig
from vidbatch.core.ids import video_id_for
from vidbatch.decode.decoder import decode_unit, frame_to_array
from vidbatch.infer.models import resolve_weights
from vidbatch.infer.tasks.classify import ImageClassifierTask
from vidbatch.plan.clips import ClipPlan, WorkUnit
from vidbatch.plan.probe import probe_video
from vidbatch.read.embeddings import load_clip_embeddings
from vidbatch.store.committed import run_manifests

BLOCK_ROWS = 1 << 20


def top_k(matrix: np.ndarray, query: np.ndarray, k: int, block_rows: int = BLOCK_ROWS) -> tuple[np.ndarray, np.ndarray]:
    """Indices and similarities of the k rows with the largest dot product with `query`, best first."""
    query = np.asarray(query, np.float32)
    best_idx = np.empty(0, np.int64)
    best_sim = np.empty(0, np.float32)
    for start in range(0, len(matrix), block_rows):
        sims = np.asarray(matrix[start : start + block_rows]) @ query
        keep = min(k, len(sims))
        part = np.argpartition(sims, len(sims) - keep)[len(sims) - keep :]
        best_idx = np.concatenate([best_idx, part + start])
        best_sim = np.concatenate([best_sim, sims[part]])
        if len(best_idx) > k:
            top = np.argpartition(best_sim, len(best_sim) - k)[len(best_sim) - k :]
            best_idx, best_sim = best_idx[top], best_sim[top]
    order = np.lexsort((best_idx, -best_sim))  # ties: lower row first, so results are deterministic
    return best_idx[order], best_sim[order]


def task_config_for(model: str, out: str, storage_options: dict[str, Any] | None = None) -> TaskConfig:
    """The classify task config of the newest run that produced `model` embeddings (its weights_path included)."""
    for manifest in reversed(run_manifests(out, storage_options)):
        for task in manifest.get("config", {}).get("tasks", []):
            if task.get("task") != "classify":
                continue
            cfg = TaskConfig.model_validate(task)
            if f"{cfg.model}:{resolve_weights(cfg.model, cfg.weights).label}" == model:
                return cfg
    raise ValueError(f"{out}/runs: no run manifest has a classify task for {model}; cannot embed a query image")


class QueryEmbedder:
    """Embeds query images exactly like the job embedded clips: same model, preprocessing, pooling."""

    def __init__(self, cfg: TaskConfig, storage_options: dict[str, Any] | None = None):
        self.task = ImageClassifierTask(cfg, torch.device("cpu"), storage_options)
        self.spec = ImageClassifierTask.frame_spec(cfg)

    def embed_frames(self, frames: np.ndarray) -> np.ndarray:
        """(n, crop, crop, 3) uint8 frames -> one L2-normalised embedding (mean-pooled, as a clip's)."""
        out = self.task.predict(torch.from_numpy(frames), [len(frames)], batch_size=16)
        return np.asarray(out["embedding"][0], np.float32)

    def embed_image(self, path: str) -> np.ndarray:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as image:
                frame = av.VideoFrame.from_image(image.convert("RGB"))
        except (UnidentifiedImageError, OSError) as e:
            raise ValueError(f"{path}: cannot read image ({e})") from None
        return self.embed_frames(frame_to_array(frame, self.spec)[None])

    def embed_video_frame(self, uri: str, at_s: float, storage_options: dict[str, Any] | None = None) -> np.ndarray:
        """The frame on screen at `at_s` seconds, decoded by the job's own decoder."""
        info = probe_video(uri, storage_options)
        if not 0 <= at_s <= info.duration_s:
            raise ValueError(f"--at {at_s}: outside {uri} (0 to {info.duration_s:.3f} s)")
        plan = ClipPlan(0, "query", at_s, at_s, (at_s,))
        unit = WorkUnit(uri, video_id_for(uri), 0, info.start_s, info.keyframe_interval_s, (plan,))
        (decoded,) = list(decode_unit(unit, self.spec, storage_options=storage_options))
        if decoded.error:
            raise ValueError(f"--at {at_s}: {decoded.error}")
        return self.embed_frames(decoded.frames)


@dataclass(frozen=True)
class SearchQuery:
    like: str | None = None  # a stored clip id
    image: str | None = None
    video: str | None = None
    at_s: float | None = None

    def check(self) -> None:
        given = [name for name, v in (("--like", self.like), ("--image", self.image), ("--video", self.video)) if v]
        if len(given) != 1:
            raise ValueError("give exactly one of --like CLIP_ID, --image FILE, --video FILE --at SECONDS")
        if (self.video is None) != (self.at_s is None):
            raise ValueError("--video and --at go together")


def search(
    out: str, query: SearchQuery, k: int = 10, model: str | None = None, storage_options: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Top-k clips as rows: clip_id, video_uri, start_s, end_s, label, similarity."""
    query.check()
    stored = load_clip_embeddings(out, ["video_uri", "start_s", "end_s", "labels"], model, storage_options)
    if query.like is not None:
        ids = stored.clips["clip_id"].to_pylist()
        if query.like not in ids:
            raise ValueError(f"--like {query.like}: no such clip id in {out}/clips")
        vector = stored.matrix[ids.index(query.like)]
    else:
        embedder = QueryEmbedder(task_config_for(stored.model, out, storage_options), storage_options)
        if query.image is not None:
            vector = embedder.embed_image(query.image)
        else:
            vector = embedder.embed_video_frame(query.video, query.at_s, storage_options)
    if len(vector) != stored.matrix.shape[1]:
        raise ValueError(f"the query embedding has {len(vector)} dimensions, the stored ones {stored.matrix.shape[1]}")
    idx, sims = top_k(stored.matrix, vector, k)
    rows = stored.clips.take(idx).select(["clip_id", "video_uri", "start_s", "end_s", "labels"]).to_pylist()
    return [
        {**{k_: r[k_] for k_ in ("clip_id", "video_uri", "start_s", "end_s")},
         "label": (r["labels"] or [None])[0], "similarity": float(s)}
        for r, s in zip(rows, sims)
    ]
