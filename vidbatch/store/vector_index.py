"""An approximate nearest-neighbour index (usearch HNSW, f16 vectors, cosine) per embedding model, so `search`
reads a memory-mapped index instead of every embedding. benchmarks/README.md ("Indexed search") has the
measurements behind the library, the f16 vectors and the graph settings.

Layout, outside every Delta table directory (vacuum removes only files inside a table's directory):

    OUT/_index/v<V>.json                  the catalog of clips version V: per model, its index file and key ranges
    OUT/_index/<model>/v<V>.usearch       that model's index of clips version V
    OUT/_index/<model>/rows/<file>.arrow  per clips data file: its rows' clip_id, times, uri, label, in key order

Keyed to the table version: a catalog covers exactly the clips version in its name and is written last, so its
presence says the index files of that version are complete. A reader at clips version V uses `v<V>.json` or, when
there is none (an index build that failed or has not run, an --as-of run whose index was pruned), searches
exactly; it never builds one itself (readers do not write into OUT).

Incremental: Delta data files never change, and a commit that replaces a video's clips removes the files that
held them (and adds a rewritten file with their other rows). Each data file's rows get one contiguous range of
keys, so an update removes the ranges of the files that left the table and adds the rows of the new files only
(a rewritten file's kept rows are re-added); removed files are never read (a vacuum may have deleted them). An
optimize rewrites every file, so its update re-adds every row. An update holds the previous index in memory
(usearch modifies a loaded index, not a mapped one) and one data file's vectors at a time.
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from vidbatch.core.storage import OutputStore
from vidbatch.store.committed import files_dataset
from vidbatch.store.delta import open_table

INDEX_DIR = "_index"
FORMAT = 1
DTYPE = "f16"  # i8: recall@10 0.94 at 100k rows (f16: 1.000), under the 0.95 goal
CONNECTIVITY = 16
EXPANSION_ADD = 64
EXPANSION_SEARCH = 64
EXACT_BELOW = 20_000  # vectors: up to this many, search scans them all (3 ms at 1280 dimensions here)
KEEP_VERSIONS = 2  # the current index and the one before (a reader that just opened it keeps working)
ROW_COLUMNS = ("clip_id", "video_id", "video_uri", "start_s", "end_s", "labels")
READ_ROWS = 16_384  # rows per batch read from a data file


def model_dir(model: str) -> str:
    """A file-system-safe directory name for a model id such as `mobilenet_v2:IMAGENET1K_V1`."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", model)[:60] + "-" + hashlib.sha1(model.encode()).hexdigest()[:8]


def catalog_path(version: int) -> str:
    return f"{INDEX_DIR}/v{version}.json"


def _file_name(path: str) -> str:
    """A clips data file's name: the table is not partitioned, so the name identifies the file."""
    return path.rstrip("/").rsplit("/", 1)[-1]


@dataclass
class ModelIndex:
    """One model's entry in a catalog."""

    model: str
    dim: int
    files: dict[str, list[int]]  # data file name -> [first key, rows]
    next_key: int

    @property
    def dir(self) -> str:
        return f"{INDEX_DIR}/{model_dir(self.model)}"

    def index_path(self, version: int) -> str:
        return f"{self.dir}/v{version}.usearch"

    def rows_path(self, file: str) -> str:
        return f"{self.dir}/rows/{file}.arrow"

    @property
    def rows(self) -> int:
        return sum(n for _, n in self.files.values())

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "dim": self.dim, "files": self.files, "next_key": self.next_key}


def read_catalog(store: OutputStore, version: int) -> dict[str, ModelIndex] | None:
    """The models' indexes of clips version `version`, or None when that version has no (complete) index."""
    if not store.exists(catalog_path(version)):
        return None
    doc = store.read_json(catalog_path(version))
    if doc.get("format") != FORMAT or doc.get("clips_version") != version:
        return None
    return {m["model"]: ModelIndex(m["model"], m["dim"], m["files"], m["next_key"]) for m in doc["models"]}


def indexed_versions(store: OutputStore) -> list[int]:
    return sorted(int(m.group(1)) for n in store.list(INDEX_DIR) if (m := re.fullmatch(r"v(\d+)\.json", n)))


def _new_index(dim: int) -> Any:
    from usearch.index import Index

    return Index(ndim=dim, metric="cos", dtype=DTYPE, connectivity=CONNECTIVITY, expansion_add=EXPANSION_ADD,
                 expansion_search=EXPANSION_SEARCH)


def local_copy(store: OutputStore, rel: str, tmp: str) -> str:
    """A local path of the file (usearch maps local files only)."""
    if store.local:
        return store.path(rel)
    local = os.path.join(tmp, rel.replace("/", "_"))
    store.fs.get_file(store.path(rel), local)
    return local


def _save(store: OutputStore, index: Any, rel: str, tmp: str) -> None:
    local = os.path.join(tmp, "new.usearch")
    index.save(local)
    if store.local:
        os.makedirs(os.path.dirname(store.path(rel)), exist_ok=True)
        shutil.move(local, store.path(rel) + ".tmp")
        os.replace(store.path(rel) + ".tmp", store.path(rel))
    else:
        store.fs.put_file(local, store.path(rel))


def _ipc_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _batches(fragment: pads.Fragment, schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    columns = [c for c in ("model", "embedding", *ROW_COLUMNS) if c in schema.names]
    scanner = pads.Scanner.from_fragment(
        fragment, schema=schema, columns=columns, filter=pc.field("embedding").is_valid(), batch_size=READ_ROWS
    )
    yield from scanner.to_batches()


def first_label(labels: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Each row's first label, null when it has none (list_element refuses an empty list)."""
    some = pc.greater(pc.fill_null(pc.list_value_length(labels), 0), 0)
    return pc.list_element(pc.if_else(some, labels, pa.scalar(None, labels.type)), 0).cast(pa.string())


def _row_table(batch: pa.RecordBatch) -> pa.Table:
    n = batch.num_rows
    labels = batch["labels"] if "labels" in batch.schema.names else pa.nulls(n, pa.list_(pa.string()))
    return pa.table({
        "clip_id": batch["clip_id"], "video_id": batch["video_id"], "video_uri": batch["video_uri"],
        "start_s": batch["start_s"], "end_s": batch["end_s"], "label": first_label(labels) if n else pa.array([], pa.string()),
    })


def embedding_matrix(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """(N, D) float32 view of a list<float32> column without per-row Python objects. Delta stores embeddings as
    plain lists, so every row is checked to have the same D."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    lengths = pc.list_value_length(arr)
    dims = pc.unique(lengths).to_pylist()
    if len(dims) != 1:
        raise ValueError(f"embeddings of different lengths {sorted(d for d in dims if d is not None)} in one model's clips")
    return arr.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False).reshape(len(arr), dims[0])


class _Builder:
    """One model's index while an update runs: the previous version's index loaded (not mapped: it changes)."""

    def __init__(self, entry: ModelIndex, index: Any):
        self.entry, self.index = entry, index

    def remove(self, file: str) -> None:
        first, n = self.entry.files.pop(file)
        if n:
            self.index.remove(np.arange(first, first + n, dtype=np.uint64))

    def add(self, store: OutputStore, file: str, rows: list[pa.Table], vectors: list[np.ndarray]) -> None:
        first = self.entry.next_key
        n = sum(len(v) for v in vectors)
        if n:
            matrix = np.concatenate(vectors)
            if matrix.shape[1] != self.entry.dim:
                raise ValueError(f"{self.entry.model}: {matrix.shape[1]}-dimensional embeddings in {file}, {self.entry.dim} before")
            self.index.add(np.arange(first, first + n, dtype=np.uint64), matrix)
            store.write_bytes(self.entry.rows_path(file), _ipc_bytes(pa.concat_tables(rows)))
        self.entry.files[file] = [first, n]
        self.entry.next_key = first + n


def update_indexes(store: OutputStore, options: dict[str, str] | None) -> int | None:
    """Bring the index to the clips table's latest version, starting from the newest indexed version (so only
    the data files added since are read); returns the version indexed, or None when the table holds no
    embeddings. Idempotent: a resumed run whose version is indexed already changes nothing. options: delta-rs'."""
    table = open_table(store.url, "clips", options)
    if table is None:
        return None
    version = table.version()
    if read_catalog(store, version) is not None:
        return version
    dataset = files_dataset(store, table)  # read by Arrow's file system: 7x faster than delta-rs' handler
    if "embedding" not in dataset.schema.names:
        return None
    fragments = {_file_name(f.path): f for f in dataset.get_fragments()}
    older = [v for v in indexed_versions(store) if v < version]
    previous = (read_catalog(store, older[-1]) or {}) if older else {}
    with tempfile.TemporaryDirectory(prefix="vidbatch-index-") as tmp:
        from usearch.index import Index

        builders = {
            model: _Builder(entry, Index.restore(local_copy(store, entry.index_path(older[-1]), tmp)))
            for model, entry in previous.items()
        }
        for builder in builders.values():
            for file in [f for f in builder.entry.files if f not in fragments]:
                builder.remove(file)
        seen = {f for b in builders.values() for f in b.entry.files}
        for file in sorted(set(fragments) - seen):
            per_model: dict[str, tuple[list[pa.Table], list[np.ndarray]]] = {}
            for batch in _batches(fragments[file], dataset.schema):
                if batch.num_rows == 0:
                    continue
                models = batch["model"]
                for model in pc.unique(models.drop_null()).to_pylist():
                    part = batch.filter(pc.equal(models, model))
                    rows, vectors = per_model.setdefault(model, ([], []))
                    rows.append(_row_table(part))
                    vectors.append(embedding_matrix(part["embedding"]))
            for model, (rows, vectors) in per_model.items():
                if model not in builders:
                    dim = vectors[0].shape[1]
                    builders[model] = _Builder(ModelIndex(model, dim, {}, 0), _new_index(dim))
                builders[model].add(store, file, rows, vectors)
            for model, builder in builders.items():
                if model not in per_model:
                    builder.entry.files[file] = [builder.entry.next_key, 0]  # read once: none of this model's rows
        kept = {m: b for m, b in builders.items() if b.entry.rows}
        for builder in kept.values():
            _save(store, builder.index, builder.entry.index_path(version), tmp)
    store.write_json(catalog_path(version), {
        "format": FORMAT, "clips_version": version, "dtype": DTYPE, "connectivity": CONNECTIVITY,
        "models": [b.entry.to_json() for b in kept.values()],
    })  # last: the catalog's presence says the version's index is complete
    _prune(store, version)
    return version


def update_after_commit(store: OutputStore, options: dict[str, str] | None) -> str | None:
    """update_indexes for a commit that has landed already: a failure must not undo the run's commit (search
    then falls back to exact search and says so; `vidbatch index OUT` retries), so it is logged and returned."""
    try:
        update_indexes(store, options)
    except Exception as e:  # noqa: BLE001 - any failure: the tables are committed, the index is a derived copy
        message = f"{store.url}: search index not updated ({type(e).__name__}: {e}); `vidbatch index` rebuilds it"
        logging.getLogger("vidbatch").warning(message)
        return message
    return None


def _prune(store: OutputStore, version: int) -> None:
    """Keep the newest KEEP_VERSIONS indexes; remove older catalogs, index files and unreferenced row files."""
    versions = [v for v in indexed_versions(store) if v <= version]
    keep = versions[-KEEP_VERSIONS:]
    catalogs = {v: read_catalog(store, v) or {} for v in keep}
    for v in versions[:-KEEP_VERSIONS]:
        store.remove_tree(catalog_path(v))
    for name in store.list(INDEX_DIR):
        if name.endswith(".json"):
            continue
        wanted_index = {f"v{v}.usearch" for v, c in catalogs.items() for e in c.values() if model_dir(e.model) == name}
        wanted_rows = {f"{f}.arrow" for c in catalogs.values() for e in c.values() if model_dir(e.model) == name
                       for f, (_, n) in e.files.items() if n}
        for file in store.list(f"{INDEX_DIR}/{name}"):
            if file.endswith(".usearch") and file not in wanted_index:
                store.remove_tree(f"{INDEX_DIR}/{name}/{file}")
        for file in store.list(f"{INDEX_DIR}/{name}/rows"):
            if file not in wanted_rows:
                store.remove_tree(f"{INDEX_DIR}/{name}/rows/{file}")


@dataclass
class Hit:
    row: dict[str, Any]  # the clip's ROW columns (label: its first label)
    similarity: float


class IndexReader:
    """The index of one model at one clips version, memory-mapped: a query touches only the graph nodes and
    vectors it visits, so the process' memory does not grow with the archive."""

    def __init__(self, store: OutputStore, version: int, entry: ModelIndex, tmp: str):
        from usearch.index import Index

        self.store, self.entry = store, entry
        self.index = Index.restore(local_copy(store, entry.index_path(version), tmp), view=True)
        self.index.expansion_search = EXPANSION_SEARCH
        starts = sorted((first, file) for file, (first, n) in entry.files.items() if n)
        self._firsts = np.array([s for s, _ in starts], np.int64)
        self._files = [f for _, f in starts]
        self._rows: dict[str, pa.Table] = {}

    def _file_rows(self, file: str) -> pa.Table:
        if file not in self._rows:
            if self.store.local:
                self._rows[file] = pa.ipc.open_file(pa.memory_map(self.store.path(self.entry.rows_path(file)))).read_all()
            else:
                data = self.store.fs.cat_file(self.store.path(self.entry.rows_path(file)))
                self._rows[file] = pa.ipc.open_file(pa.BufferReader(data)).read_all()
        return self._rows[file]

    def row(self, key: int) -> dict[str, Any]:
        at = int(np.searchsorted(self._firsts, key, side="right")) - 1
        file = self._files[at]
        return self._file_rows(file).slice(key - int(self._firsts[at]), 1).to_pylist()[0]

    def vector_of(self, clip_id: str) -> np.ndarray | None:
        """The stored (f16) embedding of a clip, found through the row files (no scan of the table)."""
        for first, file in zip(self._firsts.tolist(), self._files):
            rows = self._file_rows(file)
            at = pc.index(rows["clip_id"], clip_id).as_py()
            if at >= 0:
                return np.asarray(self.index.get(first + at), np.float32)
        return None

    def search(self, vector: np.ndarray, k: int) -> list[Hit]:
        # a small index is searched exhaustively: as fast as the graph there, and exact (an HNSW graph can miss a
        # neighbour, more so after removals)
        exact = len(self.index) <= EXACT_BELOW
        matches = self.index.search(np.asarray(vector, np.float32), k, threads=1, exact=exact)
        return [Hit(self.row(int(key)), 1.0 - float(d)) for key, d in zip(matches.keys, matches.distances)]
