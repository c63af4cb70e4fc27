"""Shared by the job entrypoints: run `vidbatch run` with the job's mode flags, exit with its exit code."""
from __future__ import annotations

import sys
from pathlib import Path

# `python jobs/x.py` from a checkout (or a Ray Jobs working_dir) imports the vidbatch next to it
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(mode_flags: list[str]) -> None:
    from vidbatch.cli import app

    app(["run", *mode_flags, *sys.argv[1:]], prog_name=Path(sys.argv[0]).name)
