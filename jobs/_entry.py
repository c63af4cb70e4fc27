"""Shared by the job entrypoints: run `vidbatch run` with the job's mode flags, exit with its exit code."""
from __future__ import annotations

import sys
from pathlib import Path

# `python jobs/x.py` from a checkout (or a Ray Jobs working_dir) imports the vidbatch next to it
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(mode_flags: list[str], description: str) -> None:
    """The `run` command under the job's own name and description (`python jobs/nightly.py --help`)."""
    import typer
    from typer.main import get_command

    from vidbatch.cli import app

    group = get_command(app)
    run = group.get_command(typer.Context(group), "run")  # the options as `vidbatch run` shows them
    # indented paragraphs (the submit command) keep their lines: "\b" is click's no-rewrap marker
    paragraphs = [f"\b\n{p}" if p.startswith(" ") else p for p in description.strip().split("\n\n")]
    paragraphs.append(f"The options are those of `vidbatch run`; this job always adds {' '.join(mode_flags)}.")
    run.help = "\n\n".join(paragraphs)
    run.main([*mode_flags, *sys.argv[1:]], prog_name=Path(sys.argv[0]).name)
