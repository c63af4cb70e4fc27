"""--partial-ok / out.partial_ok: a finished run whose only failures are inputs exits 0, with the count."""
from __future__ import annotations

import pytest

from vidbatch.store.manifest import RunCounts, status_for


@pytest.mark.parametrize(
    ("counts", "partial_ok", "expected"),
    [
        (RunCounts(listed=2, ok=2), False, ("complete", 0)),
        (RunCounts(listed=2, ok=1, failed=1), False, ("partial", 3)),
        (RunCounts(listed=2, ok=1, failed=1), True, ("partial", 0)),
        (RunCounts(listed=1, failed=1), True, ("failed", 0)),  # a night with one new file, and it is broken
        (RunCounts(listed=1, ok=1, unreadable_inputs=1), True, ("partial", 0)),
        (RunCounts(listed=0, unreadable_inputs=1), True, ("failed", 3)),  # nothing could be listed: not a few bad files
        (RunCounts(listed=0, unreadable_inputs=1), False, ("failed", 3)),
    ],
)
def test_status_and_exit_code(counts: RunCounts, partial_ok: bool, expected: tuple[str, int]):
    assert status_for(counts, partial_ok) == expected


@pytest.mark.e2e
def test_cli_partial_ok_exits_0_and_counts_the_failures(ray_session, video_dir, tmp_path):
    from typer.testing import CliRunner

    from vidbatch.cli import app

    args = ["run", str(video_dir / "a.mp4"), str(video_dir / "corrupt.mp4"), "--set", "tasks=[]", "--show", "0"]
    strict = CliRunner().invoke(app, [*args, "-o", str(tmp_path / "strict")])
    assert strict.exit_code == 3 and "partial-ok" not in strict.output
    lenient = CliRunner().invoke(app, [*args, "-o", str(tmp_path / "lenient"), "--partial-ok"])
    assert lenient.exit_code == 0, lenient.output
    assert ": partial - 2 videos listed: 1 new, 0 changed, 0 skipped, 1 failed" in lenient.output
    assert "exit 0 with --partial-ok: 1 input failed (see errors/)" in lenient.output
    config = tmp_path / "job.yaml"
    config.write_text("out:\n  partial_ok: true\n")
    from_config = CliRunner().invoke(app, [*args, "-o", str(tmp_path / "cfg"), "--config", str(config)])
    assert from_config.exit_code == 0, from_config.output
    overridden = CliRunner().invoke(app, [*args, "-o", str(tmp_path / "off"), "--config", str(config), "--no-partial-ok"])
    assert overridden.exit_code == 3, overridden.output
