"""Readers of committed output: query, search, report (+ templates/), embeddings, heads, terminal tables.

The package is also the Python API's reader: `vidbatch.read(OUT, table="clips")` returns the committed snapshot of
one table as a pyarrow Table (`as_polars=True`: a Polars DataFrame). Calling the package calls `read_table`.
"""
from __future__ import annotations

import sys
import types
from typing import Any

TABLE_NAMES = ("clips", "videos", "errors", "ledger", "shots", "head_predictions", "runs")


def read_table(
    out: str, table: str = "clips", *, columns: list[str] | None = None, storage_options: dict[str, Any] | None = None,
    as_polars: bool = False,
) -> Any:
    """One output table as its readers see it: only committed files, each clip (and shot) once; `runs` is one row
    per committed run manifest, as in `vidbatch query`. Raises ValueError for an OUT without vidbatch output or a
    table it does not hold."""
    from vidbatch.read.outputs import committed_runs
    from vidbatch.read.query import runs_table
    from vidbatch.store.committed import table_dataset

    if table not in TABLE_NAMES:
        raise ValueError(f"table {table!r}: choose one of {', '.join(TABLE_NAMES)}")
    manifests = committed_runs(out, storage_options)
    if table == "runs":
        result = runs_table(manifests)
        result = result.select(columns) if columns else result
    else:
        dataset = table_dataset(out, table, storage_options)
        if dataset is None:
            present = [t for t in TABLE_NAMES if t == "runs" or table_dataset(out, t, storage_options) is not None]
            raise ValueError(f"{out} has no {table!r} table; it has: {', '.join(present)}")
        result = dataset.to_table(columns=columns)
    if as_polars:
        try:
            import polars
        except ImportError:
            raise ImportError("as_polars=True needs Polars: pip install polars") from None
        return polars.from_arrow(result)
    return result


class _ReadersPackage(types.ModuleType):
    """`vidbatch.read(...)` reads a table, while `vidbatch.read.query` and the others stay importable submodules."""

    def __call__(self, out: str, table: str = "clips", **kwargs: Any) -> Any:
        return read_table(out, table, **kwargs)


sys.modules[__name__].__class__ = _ReadersPackage
