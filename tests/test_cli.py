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


@pytest.fixture
def no_ray(monkeypatch):
    """Fails the test if the run gets as far as starting Ray."""
    import vidbatch.pipeline

    def refuse(*args, **kwargs):
        raise AssertionError("Ray was started")

    monkeypatch.setattr(vidbatch.pipeline, "ensure_ray", refuse)


def _one_line_usage_error(result) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_output_that_is_a_file_is_refused_before_ray(no_ray, video_dir: Path, tmp_path: Path):
    target = tmp_path / "out.txt"
    target.write_text("not a directory")
    line = _one_line_usage_error(CliRunner().invoke(app, ["run", str(video_dir / "a.mp4"), "-o", str(target), "--set", "tasks=[]"]))
    assert f"output: {target} is a file" in line
    nested = _one_line_usage_error(CliRunner().invoke(app, ["run", str(video_dir / "a.mp4"), "-o", str(target / "sub")]))
    assert f"{target} is a file" in nested


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_output_that_cannot_be_written_is_refused_before_ray(no_ray, video_dir: Path, tmp_path: Path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    line = _one_line_usage_error(CliRunner().invoke(app, ["run", str(video_dir / "a.mp4"), "-o", str(locked / "out")]))
    assert "not writable" in line


def test_all_inputs_missing_is_refused_before_ray(no_ray, tmp_path: Path):
    line = _one_line_usage_error(CliRunner().invoke(
        app, ["run", str(tmp_path / "gone.mp4"), str(tmp_path / "nothing-*.mp4"), "-o", str(tmp_path / "out"), "--set", "tasks=[]"]
    ))
    assert "inputs: nothing to read" in line and "gone.mp4" in line and "(and 1 more)" in line
    assert not (tmp_path / "out").exists()


def test_a_missing_filesystem_package_names_the_pip_command(no_ray, monkeypatch, tmp_path: Path):
    from fsspec.registry import known_implementations, register_implementation

    monkeypatch.setitem(known_implementations, "vbtest", {"class": "vbtestfs.VbTestFileSystem", "err": "Install vbtestfs"})
    register_implementation("vbtest", "vbtestfs.VbTestFileSystem", clobber=True, errtxt="Install vbtestfs")
    for args in (["vbtest://bucket/a.mp4", "-o", str(tmp_path / "out")], [str(tmp_path), "-o", "vbtest://bucket/out"]):
        line = _one_line_usage_error(CliRunner().invoke(app, ["run", *args, "--set", "tasks=[]"]))
        assert "needs the vbtestfs package: pip install vbtestfs" in line


@pytest.mark.parametrize(
    "args",
    [["query", "{out}", "SELECT 1"], ["search", "{out}", "--like", "x"], ["report", "{out}", "-o", "{tmp}/r.html"],
     ["train-head", "{out}", "--labels", "{tmp}/l.csv", "-o", "{tmp}/h.pt"], ["apply-head", "{out}", "{tmp}/h.pt"]],
    ids=lambda a: a[0],
)
@pytest.mark.parametrize("kind", ["missing", "empty", "file"])
def test_readers_refuse_an_out_without_vidbatch_output(args: list[str], kind: str, tmp_path: Path):
    out = tmp_path / "out"
    if kind == "empty":
        out.mkdir()
    elif kind == "file":
        out.write_text("x")
    (tmp_path / "l.csv").write_text("clip_id,label\na,b\n")
    result = CliRunner().invoke(app, [a.format(out=out, tmp=tmp_path) for a in args])
    line = _one_line_usage_error(result)
    assert f"{out} holds no vidbatch output" in line
    assert not (tmp_path / "r.html").exists()
