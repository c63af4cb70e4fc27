"""Which output directories the readers accept: one with at least one committed vidbatch run. Anything else (a
typo, an empty or half-written directory, a file) is refused in one line instead of reading as an empty archive."""
from __future__ import annotations

from typing import Any

from vidbatch.store.committed import run_manifests


class NotAnOutputError(ValueError):
    """OUT holds no committed vidbatch run."""


def committed_runs(out: str, storage_options: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The run manifests of OUT's committed runs, oldest first; NotAnOutputError when there are none."""
    try:
        manifests = run_manifests(out, storage_options)
    except NotADirectoryError:  # OUT is a file
        manifests = []
    if not manifests:
        raise NotAnOutputError(
            f"{out} holds no vidbatch output (no committed run); write one with `vidbatch run VIDEOS -o {out}`"
        )
    return manifests
