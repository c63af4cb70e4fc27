"""SQL over a job's committed output with DuckDB: each Delta table's pyarrow dataset registered as a view.

pyarrow reaches object stores through fsspec (s3fs), so DuckDB needs no httpfs extension download; DuckDB
pushes column selection and filters down into the dataset scan.
"""
from __future__ import annotations

import csv
import io
import json
import re
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from vidbatch.store.committed import run_manifests, snapshot_versions, table_dataset

TABLES = ("clips", "videos", "errors", "shots", "ledger", "head_predictions", "frames", "events")
FORMATS = ("table", "csv", "json", "parquet")


def runs_table(manifests: list[dict[str, Any]]) -> pa.Table:
    """One row per run manifest: status, times, counts and throughput as columns, the config as JSON text."""
    rows = []
    for m in manifests:
        rows.append(
            {
                "run_id": m.get("run_id"), "status": m.get("status"), "exit_code": m.get("exit_code"),
                "started_at": m.get("started_at"), "wall_s": m.get("wall_s"), "pipeline_s": m.get("pipeline_s"),
                **{k: v for k, v in (m.get("counts") or {}).items()},
                **{k: v for k, v in (m.get("throughput") or {}).items()},
                "error": m.get("error"), "config": json.dumps(m.get("config")),
            }
        )
    names = list(dict.fromkeys(k for r in rows for k in r))  # manifests of older versions may lack some counts
    table = pa.table({n: [r.get(n) for r in rows] for n in names})
    if "started_at" in table.column_names:
        started = table["started_at"].cast(pa.timestamp("us", tz="UTC"))
        table = table.set_column(table.column_names.index("started_at"), "started_at", started)
    return table


def connect(out: str, storage_options: dict[str, Any] | None = None, as_of: str | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with one view per existing output table, all at the versions of one run (the latest
    complete run, or `as_of`), and `runs` from the manifests. DuckDB reads each Delta table through deltalake's
    pyarrow dataset, so no DuckDB extension is needed."""
    con = duckdb.connect()
    versions = snapshot_versions(out, storage_options, as_of)
    for name in TABLES:
        ds = table_dataset(out, name, storage_options, versions=versions)
        if ds is not None:
            con.register(name, ds)
    manifests = run_manifests(out, storage_options)
    if manifests:
        con.register("runs", runs_table(manifests))
    return con


def run_query(out: str, sql: str, storage_options: dict[str, Any] | None = None, as_of: str | None = None) -> pa.Table:
    """Raises duckdb.Error with DuckDB's own message for a bad query."""
    con = connect(out, storage_options, as_of)
    rel = con.sql(sql)
    if rel is None:
        raise duckdb.InvalidInputException("the statement returns no rows; vidbatch query runs SELECT-style queries")
    return rel.to_arrow_table()


def cell_text(value: Any, short_floats: bool = True) -> str:
    """One value as text: floats to 6 significant digits, bytes as their length, lists and structs as JSON."""
    if value is None:
        return ""
    if isinstance(value, float) and short_floats:
        return f"{value:.6g}"
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    if isinstance(value, (list, dict)):
        return json.dumps(value, default=str)
    return str(value)


def format_csv(table: pa.Table) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(table.column_names)
    for row in table.to_pylist():
        writer.writerow([cell_text(row[n], short_floats=False) for n in table.column_names])
    return buffer.getvalue()


def format_json(table: pa.Table) -> str:
    """A JSON array of row objects (binary values as their length, like the table format)."""
    rows = [{k: f"<{len(v)} bytes>" if isinstance(v, bytes) else v for k, v in r.items()} for r in table.to_pylist()]
    return json.dumps(rows, default=str, indent=1)


def write_parquet(table: pa.Table, path: str) -> None:
    pq.write_table(table, path, compression="zstd")


def view_names(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The views a query can name on this connection (the output's tables that exist, `runs`)."""
    rows = con.sql(
        "SELECT view_name FROM duckdb_views() WHERE NOT internal UNION SELECT table_name FROM duckdb_tables()"
    ).fetchall()
    return sorted(r[0] for r in rows)


def missing_view(error: duckdb.Error) -> str | None:
    """The table name of DuckDB's "Table with name X does not exist" (which then guesses a system table)."""
    match = re.search(r"Table with name (\S+) does not exist", str(error))
    return match[1] if match else None
