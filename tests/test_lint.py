"""Static checks that catch what tests on one machine can miss (an undefined name on a path tests don't take)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_pyflakes_clean():
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--select", "F,E9,B", "--ignore", "B905", "--output-format", "concise",
         "vidbatch", "tests", "benchmarks"],
        cwd=ROOT, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_only_the_pipeline_imports_ray():
    offenders = [
        str(p.relative_to(ROOT)) for p in (ROOT / "vidbatch").rglob("*.py")
        if p.name != "pipeline.py" and any(line.startswith(("import ray", "from ray")) for line in p.read_text().splitlines())
    ]
    assert offenders == []
