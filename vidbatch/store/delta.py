"""Every output table is a Delta Lake table under `OUT/<table>/`, written and read with delta-rs (`deltalake`).

Delta's log is what makes a write visible, so any engine that reads Delta (DuckDB, Polars, Spark, Trino, Ray Data)
sees exactly the committed rows. A run commits each table once, under the app transaction (job key, run sequence):
an attempt that finds its transaction already in a table's log skips that table, so a resumed run never commits
twice. Rows of re-processed videos are replaced by predicate in the same commit that adds the new ones.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.dataset as pads
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError

from vidbatch.config import ConfigError

TABLES = ("clips", "videos", "errors", "shots", "ledger", "head_predictions", "frames", "events")
COMMIT_ATTEMPTS = 5  # a conflicting concurrent commit makes the write re-read the table and try again

# fsspec/s3fs option -> delta-rs (object_store) option
_S3_KEYS = {
    "key": "AWS_ACCESS_KEY_ID", "secret": "AWS_SECRET_ACCESS_KEY", "token": "AWS_SESSION_TOKEN",
    "endpoint_url": "AWS_ENDPOINT_URL", "region_name": "AWS_REGION",
}


class OutputLayoutError(ConfigError):
    """OUT holds output that this version cannot read or must not write into (a usage error: exit 2)."""


def delta_storage_options(
    url: str, storage_options: dict[str, Any] | None = None, delta_options: dict[str, str] | None = None
) -> dict[str, str] | None:
    """delta-rs options for `url` from the job's fsspec options, then the user's explicit `delta_options`.

    On S3 commits are conditional puts (`PUT If-None-Match`, `conditional_put: etag`), which AWS S3 and current
    S3-compatible stores (MinIO, R2, Ceph) support. delta-rs 1.6 can no longer commit without them: its DynamoDB
    locking provider is gone and `AWS_S3_ALLOW_UNSAFE_RENAME` does not bring it back (checked), so such a store
    needs another output location. `out.delta_storage_options` passes any other delta-rs option through.
    """
    scheme = urlparse(url).scheme
    opts: dict[str, str] = {}
    if scheme in ("s3", "s3a"):
        so = dict(storage_options or {})
        so.update(so.pop("client_kwargs", None) or {})
        opts = {_S3_KEYS[k]: str(v) for k, v in so.items() if k in _S3_KEYS and v is not None}
        if opts.get("AWS_ENDPOINT_URL", "").startswith("http://"):
            opts["AWS_ALLOW_HTTP"] = "true"
        opts.setdefault("conditional_put", "etag")
    opts.update(delta_options or {})
    return opts or None


def table_uri(out: str, name: str) -> str:
    return f"{out.rstrip('/')}/{name}"


def open_table(out: str, name: str, options: dict[str, str] | None, version: int | None = None) -> DeltaTable | None:
    """The table at `version` (None: latest), or None when it does not exist yet."""
    try:
        return DeltaTable(table_uri(out, name), version=version, storage_options=options)
    except TableNotFoundError:
        return None


def in_predicate(column: str, values: Iterable[str]) -> str:
    quoted = ",".join("'" + v.replace("'", "''") + "'" for v in sorted(set(values)))
    return f"{column} IN ({quoted})"


def committed_version(out: str, name: str, options: dict[str, str] | None, app_id: str, seq: int) -> int | None:
    """The table version at which (app_id, seq) committed; None if it has not. Transaction versions only grow
    along the log, so a binary search over versions finds it (history() would hold the GIL for its requests)."""
    latest = open_table(out, name, options)
    committed = None if latest is None else latest.transaction_version(app_id)
    if committed is None or committed < seq:
        return None
    lo, hi = 0, latest.version()
    while lo < hi:
        mid = (lo + hi) // 2
        at = open_table(out, name, options, mid).transaction_version(app_id)  # type: ignore[union-attr]
        if at is not None and at >= seq:
            hi = mid
        else:
            lo = mid + 1
    return lo


def _create_empty(out: str, name: str, schema: pa.Schema, options: dict[str, str] | None) -> DeltaTable:
    """A replacing write needs the table to exist: two runs that both created it by appending would each add
    their rows (the second append does not conflict with the first), doubling the rows they share."""
    try:
        write_deltalake(table_uri(out, name), schema.empty_table(), mode="ignore", storage_options=options)
    except (CommitFailedError, DeltaError):
        pass  # another run created it first
    table = open_table(out, name, options)
    if table is None:
        raise CommitFailedError(f"{table_uri(out, name)}: could not create the table")
    return table


def commit_table(
    out: str, name: str, data: pa.Table | pa.RecordBatchReader | Callable[[], pa.RecordBatchReader], *, app_id: str,
    seq: int, options: dict[str, str] | None, replace: str | None = None, metadata: dict[str, str] | None = None,
) -> int:
    """Commit `data` to table `name` once for (app_id, seq); returns the table version that holds it.

    data: rows, a stream, or a function that opens the stream anew (large tables: each attempt re-reads it).
    replace: a predicate whose rows the same commit removes (the rows being replaced). A concurrent commit that
    conflicts makes the write start over on the new table state, so a replacement never loses or doubles rows.
    """
    reopen = data if callable(data) else None
    uri = table_uri(out, name)
    props = CommitProperties(
        app_transactions=[Transaction(app_id=app_id, version=seq)],
        custom_metadata={"vidbatch_app_id": app_id, "vidbatch_seq": str(seq), **(metadata or {})},
    )
    for attempt in range(COMMIT_ATTEMPTS):
        done = committed_version(out, name, options, app_id, seq)
        if done is not None:
            return done
        if reopen is not None:
            data = reopen()
        table = open_table(out, name, options)
        if table is None and replace is not None:
            table = _create_empty(out, name, data.schema, options)
        try:
            if replace is None:
                write_deltalake(uri, data, mode="append", schema_mode="merge", storage_options=options, commit_properties=props)
            else:
                write_deltalake(
                    table, data, mode="overwrite", predicate=replace, schema_mode="merge", commit_properties=props
                )
        except CommitFailedError:
            if attempt == COMMIT_ATTEMPTS - 1:
                raise
            if reopen is None and isinstance(data, pa.RecordBatchReader):
                raise  # a stream cannot be replayed; the run stays staged and resumes
            continue
        return committed_version(out, name, options, app_id, seq)  # type: ignore[return-value]
    raise AssertionError("unreachable")


def dataset(out: str, name: str, options: dict[str, str] | None, version: int | None = None) -> pads.Dataset | None:
    table = open_table(out, name, options, version)
    return None if table is None else table.to_pyarrow_dataset()


def existing_tables(out: str, options: dict[str, str] | None) -> dict[str, int]:
    """Latest version of every output table that exists."""
    versions = {}
    for name in TABLES:
        table = open_table(out, name, options)
        if table is not None:
            versions[name] = table.version()
    return versions


def vacuum(out: str, options: dict[str, str] | None, retain_hours: int, dry_run: bool) -> dict[str, list[str]]:
    """Files no longer referenced by a version within the last `retain_hours`, per table (removed unless dry_run)."""
    removed = {}
    for name in TABLES:
        table = open_table(out, name, options)
        if table is not None:
            # full: also files of commits that failed (a killed or conflicting writer), once older than the retention
            removed[name] = table.vacuum(
                retention_hours=retain_hours, dry_run=dry_run, enforce_retention_duration=False, full=True
            )
    return removed


def optimize(out: str, options: dict[str, str] | None, zorder_by: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """Compact small files (nightly runs add a few per table), optionally z-ordered; returns delta-rs' metrics."""
    metrics = {}
    for name in TABLES:
        table = open_table(out, name, options)
        if table is None:
            continue
        columns = [c for c in zorder_by or [] if c in table.to_pyarrow_dataset().schema.names]
        metrics[name] = table.optimize.z_order(columns) if columns else table.optimize.compact()
    return metrics
