"""vidbatch: video archives -> per-clip predictions and embeddings in Parquet, on Ray Data.

Python API: `vidbatch.run(config)` runs a job and returns its summary; `vidbatch.read(OUT, table="clips")` returns a
committed table as a pyarrow Table (`as_polars=True`: a Polars DataFrame).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from vidbatch.config import JobConfig
    from vidbatch.store.manifest import RunSummary


def run(config: JobConfig | dict[str, Any], *, verbose: bool = True) -> RunSummary:
    """Python API: validate the config, run the job (embedded local Ray unless an address is set), return its summary.
    verbose=False hides Ray's own log lines, as the CLI does without -v."""
    from vidbatch.job import validate_config
    from vidbatch.pipeline import run as run_pipeline

    return run_pipeline(validate_config(config), verbose=verbose)


from vidbatch import read  # noqa: E402  (the readers package, callable: vidbatch.read(OUT, table="clips"))

__all__ = ["__version__", "read", "run"]
