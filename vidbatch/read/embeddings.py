"""Stored clip embeddings as one float32 matrix, for search and heads (no video is decoded)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vidbatch.store.committed import table_dataset


@dataclass(frozen=True)
class ClipEmbeddings:
    clips: pa.Table  # one row per clip, in matrix order
    matrix: np.ndarray  # (N, D) float32, L2-normalised rows
    model: str  # clips.model that produced them


def embedding_matrix(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """(N, D) float32 view of a list<float32> column without per-row Python objects. Delta stores embeddings as
    plain lists, so every row is checked to have the same D."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    lengths = pc.list_value_length(arr)
    dims = pc.unique(lengths).to_pylist()
    if len(dims) != 1:
        raise ValueError(f"embeddings of different lengths {sorted(d for d in dims if d is not None)} in one model's clips")
    return arr.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False).reshape(len(arr), dims[0])


def load_clip_embeddings(
    out: str, columns: list[str], model: str | None = None, storage_options: dict[str, Any] | None = None
) -> ClipEmbeddings:
    """Clips with an embedding, of one embedding model. The committed view holds each clip once (a re-processed
    video's older files are replaced in the same commit), so no de-duplication is needed here.

    Raises ValueError when there are none, or when several models wrote embeddings and `model` does not pick one.
    """
    ds = table_dataset(out, "clips", storage_options)
    if ds is None or "embedding" not in ds.schema.names:
        raise ValueError(f"{out}: no clips with embeddings (run the job with the classify task)")
    wanted = list(dict.fromkeys(["clip_id", "model", "embedding", *columns]))
    table = ds.to_table(columns=[c for c in wanted if c in ds.schema.names], filter=pc.field("embedding").is_valid())
    table = table.sort_by("clip_id")  # one order whatever the files' order: heads train on the same split every time
    models = sorted(set(table["model"].to_pylist()))
    if model is not None:
        if model not in models:
            raise ValueError(f"{out}: no clips embedded by {model!r}; stored models: {models}")
        table = table.filter(pc.equal(table["model"], model))
    elif len(models) > 1:
        raise ValueError(f"{out}: clips hold embeddings of several models {models}; choose one with --model")
    if table.num_rows == 0:
        raise ValueError(f"{out}: no clips with embeddings (run the job with the classify task)")
    return ClipEmbeddings(table, embedding_matrix(table["embedding"]), models[0] if model is None else model)
