"""The package layout is enforced, not just described: layers point one way (the contracts in pyproject.toml),
config.py imports nothing of vidbatch, only pipeline.py imports ray, and no import cycle exists."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_are_kept():
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint), "--config", str(ROOT / "pyproject.toml")], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


def _graph() -> grimp.ImportGraph:
    return grimp.build_graph("vidbatch")


def test_config_imports_nothing_of_vidbatch():
    imported = _graph().find_modules_directly_imported_by("vidbatch.config")
    assert not {m for m in imported if m.startswith("vidbatch")}


def test_only_pipeline_imports_ray():
    graph = grimp.build_graph("vidbatch", "ray")
    importers = {m for m in graph.find_modules_that_directly_import("ray") if m.startswith("vidbatch")}
    importers |= {
        m for sub in graph.find_children("ray") for m in graph.find_modules_that_directly_import(sub) if m.startswith("vidbatch")
    }
    assert importers == {"vidbatch.pipeline"}


def test_no_import_cycles():
    graph = _graph()
    cycles = []
    for importer in sorted(graph.modules):
        for imported in graph.find_modules_directly_imported_by(importer):
            back = graph.find_shortest_chain(importer=imported, imported=importer)
            if back:
                cycles.append(" -> ".join((importer, *back)))
    assert not cycles, "\n".join(cycles)


def test_stages_without_models_do_not_import_torch():
    """Probe and decode workers deserialise these stages; importing torch there costs seconds and memory per worker."""
    code = "import sys, vidbatch.plan.prepare, vidbatch.decode.decode_stage; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
