"""The command line as a new user meets it: --version, help that describes every option, flags shown as flags,
the job entrypoints' own help, and the checks that refuse a run in one line before Ray starts."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.main import get_command
from typer.testing import CliRunner

import vidbatch
from vidbatch.cli import app

ROOT = Path(__file__).parents[1]


def test_version():
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == f"vidbatch {vidbatch.__version__}"


def _commands():
    group = get_command(app)
    return group, sorted(group.commands)


@pytest.mark.parametrize("name", _commands()[1])
def test_every_option_has_help_and_flags_take_no_value(name: str):
    result = CliRunner().invoke(app, [name, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "<bool>" not in result.output  # `--incremental <bool>` read as if it took a value
    group, _ = _commands()
    command = group.commands[name]
    missing = [p.name for p in command.params if not getattr(p, "help", None)]
    assert not missing, f"{name}: options without help: {missing}"


def test_root_help_shows_flags_as_flags():
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0 and "<bool>" not in result.output and "--version" in result.output


@pytest.mark.parametrize("job", ["nightly", "backfill"])
def test_job_entrypoints_describe_the_job(job: str):
    proc = subprocess.run([sys.executable, str(ROOT / "jobs" / f"{job}.py"), "--help"], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "COLUMNS": "200"})
    assert proc.returncode == 0, proc.stderr
    assert f"Usage: {job}.py [OPTIONS]" in proc.stdout and " run " not in proc.stdout.splitlines()[1]
    first_line = (ROOT / "jobs" / f"{job}.py").read_text().split('"""')[1].splitlines()[0]
    assert first_line.split(":")[0] in proc.stdout  # the job's own description, not `vidbatch run`'s
    assert "--config" in proc.stdout
