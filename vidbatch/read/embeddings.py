"""Stored clip embeddings as one float32 matrix, and frame embeddings as one sequence per clip, for search and
heads (no video is decoded)."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from vidbatch.store.committed import snapshot_versions, table_dataset, table_files
from vidbatch.store.vector_index import embedding_matrix


@dataclass(frozen=True)
class ClipEmbeddings:
    clips: pa.Table  # one row per clip, in matrix order
    matrix: np.ndarray  # (N, D) float32, L2-normalised rows
    model: str  # clips.model that produced them


NO_EMBEDDINGS = "no clips with embeddings (run the job with the classify task)"
BATCH_ROWS = 16_384  # rows per batch when streaming: 16k x 1280 float32 is 80 MB


def embedded_clips(out: str, storage_options: dict[str, Any] | None = None, as_of: str | None = None,
                   versions: dict[str, int] | None = None) -> pads.Dataset:
    """The clips table of the snapshot as files to stream, refused (ValueError) when it has no embedding column."""
    versions = snapshot_versions(out, storage_options, as_of) if versions is None else versions
    ds = table_files(out, "clips", storage_options, versions)
    if ds is None or "embedding" not in ds.schema.names:
        raise ValueError(f"{out}: {NO_EMBEDDINGS}")
    return ds


def pick_model(out: str, models: list[str], model: str | None) -> str:
    """The model to read: `model` if stored, else the only one (ValueError when there are none or several)."""
    if model is not None:
        if model not in models:
            raise ValueError(f"{out}: no clips embedded by {model!r}; stored models: {models}")
        return model
    if not models:
        raise ValueError(f"{out}: {NO_EMBEDDINGS}")
    if len(models) > 1:
        raise ValueError(f"{out}: clips hold embeddings of several models {models}; choose one with --model")
    return models[0]


def stored_models(ds: pads.Dataset) -> list[str]:
    """Models that wrote clips (reads the model column only: filtering on the embedding would read it too)."""
    seen: set[str] = set()
    for batch in ds.to_batches(columns=["model"], filter=pc.field("model").is_valid(), batch_size=BATCH_ROWS * 8):
        seen.update(pc.unique(batch["model"].drop_null()).to_pylist())
    return sorted(seen)


def clip_batches(
    ds: pads.Dataset, model: str, columns: list[str], batch_rows: int = BATCH_ROWS, only: pc.Expression | None = None
) -> Iterator[tuple[pa.RecordBatch, np.ndarray]]:
    """(rows, their (n, D) float32 embeddings) of one model's clips, a batch at a time in file order, reading only
    `columns` and the embedding; little read-ahead, so memory stays at a few batches whatever the table's size."""
    wanted = [c for c in dict.fromkeys(["clip_id", "embedding", *columns]) if c in ds.schema.names]
    keep = (pc.field("model") == model) & pc.field("embedding").is_valid()
    for batch in ds.to_batches(columns=wanted, filter=keep if only is None else keep & only, batch_size=batch_rows,
                               batch_readahead=1, fragment_readahead=1):
        if batch.num_rows:
            yield batch, embedding_matrix(batch["embedding"])


def load_clip_embeddings(
    out: str, columns: list[str], model: str | None = None, storage_options: dict[str, Any] | None = None
) -> ClipEmbeddings:
    """Clips with an embedding, of one embedding model, all in memory (apply-head predicts every clip). The
    committed view holds each clip once (a re-processed video's older files are replaced in the same commit), so
    no de-duplication is needed here.

    Raises ValueError when there are none, or when several models wrote embeddings and `model` does not pick one.
    """
    ds = embedded_clips(out, storage_options)
    model = pick_model(out, stored_models(ds), model)
    wanted = list(dict.fromkeys(["clip_id", "model", "embedding", *columns]))
    table = ds.to_table(columns=[c for c in wanted if c in ds.schema.names],
                        filter=(pc.field("model") == model) & pc.field("embedding").is_valid())
    table = table.sort_by("clip_id")  # one order whatever the files' order
    if table.num_rows == 0:
        raise ValueError(f"{out}: {NO_EMBEDDINGS}")
    return ClipEmbeddings(table, embedding_matrix(table["embedding"]), model)


def _no_frames(out: str) -> ValueError:
    return ValueError(
        f"{out}: no frames table; temporal heads read per-frame embeddings: run the job with out.frame_embeddings: true"
    )


class StoredFrames:
    """The committed frames/ rows of one embedding model's clips, as one (T, D) sequence per clip in time order.

    Refused (ValueError) when the output has no frames table, when none of the clips asked for has frames, or
    when the frames were made by another embedding model than `model`.
    """

    def __init__(
        self, out: str, model: str | None, storage_options: dict[str, Any] | None = None,
        clip_ids: list[str] | None = None, columns: tuple[str, ...] = (),
    ):
        frames = table_dataset(out, "frames", storage_options)
        clips = table_dataset(out, "clips", storage_options)
        if frames is None or clips is None:
            raise _no_frames(out)
        if "model" not in clips.schema.names:
            raise ValueError(f"{out}: no clips with embeddings (run the job with the classify task)")
        self.only = None if clip_ids is None else pc.field("clip_id").isin(sorted(clip_ids))
        framed = pc.unique(frames.to_table(columns=["clip_id"], filter=self.only)["clip_id"])
        table = clips.to_table(
            columns=list(dict.fromkeys(["clip_id", "model", "frame_times_s", *columns])),
            filter=pc.field("clip_id").isin(framed) & pc.field("model").is_valid(),
        )
        models = sorted(set(table["model"].to_pylist()))
        which = "the labelled clips" if clip_ids is not None else "any clip"
        if not models:
            raise ValueError(f"{out}: no frames for {which} (the frames table has {frames.count_rows()} rows)")
        if model is None and len(models) > 1:
            raise ValueError(f"{out}: the frames hold embeddings of several models {models}; choose one with --model")
        model = model or models[0]
        if model not in models:
            raise ValueError(
                f"{out}: the frames of {which} were made with {', '.join(models)}, not {model}: a temporal head reads "
                "only frame embeddings of the model it was trained on"
            )
        self.out, self.frames, self.model = out, frames, model
        self.clips = table.filter(pc.equal(table["model"], model)).sort_by("clip_id")

    def batches(self, clips_per_batch: int = 4096) -> Iterator[tuple[pa.Table, list[np.ndarray]]]:
        """(clip rows, their sequences), a batch of clips at a time, in any order. A clip's frames may lie in any
        files and order: each clip is handed on once all its frames (len(frame_times_s)) have been read."""
        ids = self.clips["clip_id"].to_pylist()
        position = {cid: i for i, cid in enumerate(ids)}
        expected = pc.list_value_length(self.clips["frame_times_s"]).to_pylist()
        partial: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}
        have = [0] * len(ids)
        ready: list[tuple[int, np.ndarray]] = []
        columns = ["clip_id", "frame_index", "embedding"]
        for batch in self.frames.to_batches(columns=columns, filter=self.only):
            if batch.num_rows == 0:
                continue
            rows = [position.get(c, -1) for c in batch["clip_id"].to_pylist()]
            order = np.asarray(batch["frame_index"].to_numpy(zero_copy_only=False))
            matrix = embedding_matrix(batch["embedding"])
            owners = np.asarray(rows)
            for clip in np.unique(owners[owners >= 0]).tolist():
                mine = np.flatnonzero(owners == clip)
                partial.setdefault(clip, []).append((order[mine], matrix[mine]))
                have[clip] += len(mine)
                if have[clip] == expected[clip]:
                    parts = partial.pop(clip)
                    index, vectors = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
                    ready.append((clip, vectors[np.argsort(index, kind="stable")]))
            while len(ready) >= clips_per_batch:
                yield self._batch(ready[:clips_per_batch])
                ready = ready[clips_per_batch:]
        if ready:
            yield self._batch(ready)

    def _batch(self, ready: list[tuple[int, np.ndarray]]) -> tuple[pa.Table, list[np.ndarray]]:
        return self.clips.take([i for i, _ in ready]), [s for _, s in ready]

    def sequences(self) -> tuple[pa.Table, list[np.ndarray]]:
        """Every clip's sequence at once, in clip_id order (training: only the labelled clips are read)."""
        got = [b for b in self.batches()]
        clips = pa.concat_tables([b[0] for b in got]) if got else self.clips.slice(0, 0)
        sequences = [s for b in got for s in b[1]]
        order = np.argsort(np.asarray(clips["clip_id"].to_pylist(), dtype=object), kind="stable")
        return clips.take(order), [sequences[i] for i in order]
