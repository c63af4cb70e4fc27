"""Write output tables as Parquet files under the output directory, through fsspec."""
from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.core import url_to_fs


class TableWriter:
    """Buffers rows of one table and writes `part-<run_id>-<n>.parquet` files of about rows_per_file rows.

    Rows are cast to the table's schema, so a stage that drifts from schema.py fails here, loudly.
    """

    def __init__(self, directory: str, schema: pa.Schema, run_id: str, rows_per_file: int,
                 storage_options: dict[str, Any] | None = None):
        self.fs, self.path = url_to_fs(directory, **(storage_options or {}))
        self.schema = schema
        self.run_id = run_id
        self.rows_per_file = rows_per_file
        self.pending: list[pa.Table] = []
        self.pending_rows = 0
        self.files: list[str] = []
        self.rows = 0

    def add(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        self.pending.append(table.select(self.schema.names).cast(self.schema))
        self.pending_rows += table.num_rows
        if self.pending_rows >= self.rows_per_file:
            self._flush()

    def _flush(self) -> None:
        table = pa.concat_tables(self.pending) if self.pending else self.schema.empty_table()
        self.fs.makedirs(self.path, exist_ok=True)
        name = f"{self.path}/part-{self.run_id}-{len(self.files):05d}.parquet"
        with self.fs.open(name, "wb") as f:
            pq.write_table(table, f, compression="zstd")
        self.files.append(name)
        self.rows += table.num_rows
        self.pending, self.pending_rows = [], 0

    def close(self) -> list[str]:
        """Write what is buffered; a run with no rows still writes one empty file so readers see the schema."""
        if self.pending or not self.files:
            self._flush()
        return self.files
