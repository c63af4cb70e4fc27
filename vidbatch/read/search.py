"""Nearest clips by cosine similarity of stored embeddings to a clip, an image, or a frame of a video.

Two paths. Indexed (the default when the snapshot's clips version has an index, vidbatch/store/vector_index.py):
an HNSW search in the memory-mapped index of the model, approximate (recall and latency in benchmarks/README.md),
similarities computed on the index's f16 vectors. Exact (`exact=True`, or no index of that version): one pass
over the embeddings, streamed from the Delta table's files at the snapshot version in Arrow batches (only the
columns a hit shows are read), so memory stays at a few batches on any archive size. Stored embeddings are
L2-normalised, so cosine similarity is a dot product, and argpartition replaces a full sort.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vidbatch.core.storage import OutputStore
from vidbatch.read.embeddings import (
    clip_batches,
    embedded_clips,
    pick_model,
    stored_models,
)
from vidbatch.store.committed import snapshot_versions
from vidbatch.store.vector_index import IndexReader, first_label, read_catalog

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


HIT_COLUMNS = ("clip_id", "video_uri", "start_s", "end_s")


@dataclass(frozen=True)
class SearchResult:
    hits: list[dict[str, Any]]  # clip_id, video_uri, start_s, end_s, label, similarity; best first
    method: str  # "index" or "exact"
    note: str  # why this method, for the user


def exact_top_k(ds: pa.dataset.Dataset, model: str, vector: np.ndarray, k: int) -> list[dict[str, Any]]:
    """The k best clips over every stored embedding of `model`, streamed in batches; ties go to the lower
    clip_id, so the answer does not depend on the order of the table's files."""
    best: pa.Table | None = None
    for batch, matrix in clip_batches(ds, model, [*HIT_COLUMNS, "labels"]):
        _check_dim(vector, matrix.shape[1])
        idx, sims = top_k(matrix, vector, k)
        labels = batch["labels"] if "labels" in batch.schema.names else pa.nulls(batch.num_rows, pa.list_(pa.string()))
        part = pa.table({
            **{c: batch[c].take(pa.array(idx)) for c in HIT_COLUMNS},
            "label": first_label(labels.take(pa.array(idx))), "similarity": pa.array(sims, pa.float64()),
        })
        best = part if best is None else pa.concat_tables([best, part])
        best = best.sort_by([("similarity", "descending"), ("clip_id", "ascending")]).slice(0, k)
    return [] if best is None else best.to_pylist()


def _query_vector(
    out: str, query: SearchQuery, model: str, like: Any, storage_options: dict[str, Any] | None
) -> np.ndarray:
    """like: the stored-clip lookup of the path in use (clip id -> its embedding, or None)."""
    if query.like is not None:
        vector = like(query.like)
        if vector is None:
            raise ValueError(f"--like {query.like}: no such clip id in {out}/clips (model {model})")
        return vector
    from vidbatch.read.query_embedding import (  # torch: only to embed a query
        QueryEmbedder,
        task_config_for,
    )

    embedder = QueryEmbedder(task_config_for(model, out, storage_options), storage_options)
    if query.image is not None:
        return embedder.embed_image(query.image)
    return embedder.embed_video_frame(query.video, query.at_s, storage_options)


def _check_dim(vector: np.ndarray, dim: int) -> None:
    if len(vector) != dim:
        raise ValueError(f"the query embedding has {len(vector)} dimensions, the stored ones {dim}")


def run_search(
    out: str, query: SearchQuery, k: int = 10, model: str | None = None, storage_options: dict[str, Any] | None = None,
    as_of: str | None = None, exact: bool = False,
) -> SearchResult:
    """Top-k clips of the snapshot (the latest complete run, or run `as_of`): through its index when one covers
    the snapshot's clips version and `exact` is off, else by the exact streamed search (see module doc)."""
    query.check()
    versions = snapshot_versions(out, storage_options, as_of)
    ds = embedded_clips(out, storage_options, versions=versions)
    version = versions["clips"]
    store = OutputStore(out, storage_options)
    catalog = None if exact else read_catalog(store, version)
    if catalog is not None:
        model = pick_model(out, sorted(catalog), model)
        with tempfile.TemporaryDirectory(prefix="vidbatch-search-") as tmp:
            reader = IndexReader(store, version, catalog[model], tmp)
            vector = _query_vector(out, query, model, reader.vector_of, storage_options)
            _check_dim(vector, catalog[model].dim)
            hits = reader.search(vector, k)
        rows = [{**{c: h.row[c] for c in HIT_COLUMNS}, "label": h.row["label"], "similarity": h.similarity} for h in hits]
        return SearchResult(rows, "index", f"index of clips version {version} ({catalog[model].rows} clips)")
    model = pick_model(out, stored_models(ds), model)

    def like(clip_id: str) -> np.ndarray | None:
        found = list(clip_batches(ds, model, [], only=pc.field("clip_id") == clip_id))
        return found[0][1][0] if found else None

    vector = _query_vector(out, query, model, like, storage_options)
    rows = exact_top_k(ds, model, np.asarray(vector, np.float32), k)
    why = "--exact" if exact else f"no index of clips version {version}"
    return SearchResult(rows, "exact", f"exact search ({why})")


def search(
    out: str, query: SearchQuery, k: int = 10, model: str | None = None, storage_options: dict[str, Any] | None = None,
    as_of: str | None = None, exact: bool = False,
) -> list[dict[str, Any]]:
    """Top-k clips as rows: clip_id, video_uri, start_s, end_s, label, similarity (see run_search)."""
    return run_search(out, query, k, model, storage_options, as_of, exact).hits
