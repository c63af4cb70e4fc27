"""The ledger read for a nightly run, without Ray: Arrow filtered in the scan to the listing and the inputs' scope
(never every row of every archive the output has seen), and the selection made on those columns."""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa
from deltalake import write_deltalake

from vidbatch.config import IncrementalConfig, InputConfig
from vidbatch.plan.listing import VideoSource, scope_of
from vidbatch.store.ledger import ledger_table, read_ledger, select

CFG = IncrementalConfig(enabled=True, quarantine_after=2)


def _ledger(out: Path, rows: list[tuple[VideoSource, str]]) -> None:
    """Ledger rows as committed runs leave them: (source, status)."""
    table = ledger_table([(s, "new", True) for s, _ in rows], [], {}, "p1", CFG, "r0", "2026-01-01T00:00:00")
    table = table.set_column(table.schema.get_field_index("status"), "status", pa.array([st for _, st in rows]))
    write_deltalake(str(out / "ledger"), table, mode="overwrite")


def test_read_ledger_returns_only_listed_and_in_scope_rows_as_arrow(tmp_path: Path):
    here = [VideoSource(f"/arch/a/v{i}.mp4", 10, "1") for i in range(3)]
    elsewhere = [VideoSource(f"/other/v{i}.mp4", 10, "1") for i in range(4)]
    named = VideoSource("/other/named.mp4", 10, "1")  # listed by a manifest: out of the scope, still compared
    _ledger(tmp_path, [(s, "ok") for s in here + elsewhere + [named]])
    scope = scope_of(["/arch/a"], InputConfig())
    table = read_ledger(str(tmp_path), None, [here[0].uri, named.uri], scope)
    assert isinstance(table, pa.Table)
    assert sorted(table["video_uri"].to_pylist()) == sorted([s.uri for s in here] + [named.uri])
    assert read_ledger(str(tmp_path / "none"), None, [here[0].uri], scope).num_rows == 0  # no ledger yet


def test_scope_expression_covers_globs_and_files_exactly_as_the_predicate():
    scope = scope_of(["/arch/a", "/arch/g*/x?.mp4", "/one/f.mp4", "/list.txt"], InputConfig())
    uris = ["/arch/a/1.mp4", "/arch/ab/1.mp4", "/arch/g1/x2.mp4", "/arch/g1/y2.mp4", "/arch/g/z/x2.mp4", "/one/f.mp4",
            "/one/g.mp4", "/list.txt"]
    table = pa.table({"video_uri": uris})
    pushed = set(pa.dataset.dataset(table).to_table(filter=scope.expression("video_uri"))["video_uri"].to_pylist())
    assert {u for u in uris if scope(u)} == {"/arch/a/1.mp4", "/arch/g1/x2.mp4", "/arch/g/z/x2.mp4", "/one/f.mp4"}
    assert {u for u in uris if scope(u)} <= pushed  # the scan may read a superset; the predicate decides


def test_select_sorts_every_listed_video_and_finds_deletions(tmp_path: Path):
    s = {n: VideoSource(f"/arch/{n}.mp4", 10, "1") for n in ["same", "grown", "bad", "stuck", "old", "gone", "back"]}
    _ledger(tmp_path, [(s["same"], "ok"), (s["grown"], "ok"), (s["bad"], "failed"), (s["stuck"], "quarantined"),
                       (s["gone"], "ok"), (s["back"], "deleted")])
    listed = [s["same"], VideoSource(s["grown"].uri, 11, "1"), s["bad"], s["stuck"], s["old"], s["back"],
              VideoSource("/arch/new.mp4", 1, "1")]
    scope = scope_of(["/arch"], InputConfig())
    ledger = read_ledger(str(tmp_path), None, [x.uri for x in listed], scope)
    sel = select(listed, ledger, "p1", CFG, scope)
    assert [(x.uri.rsplit("/", 1)[1], r) for x, r in sel.process] == [
        ("grown.mp4", "changed"), ("bad.mp4", "retry"), ("old.mp4", "new"), ("back.mp4", "new"), ("new.mp4", "new")]
    assert (sel.skipped, sel.quarantined, sel.older_pipeline) == (1, 1, 0)
    assert [r["video_uri"] for r in sel.deleted] == ["/arch/gone.mp4"]
    assert sorted(sel.previous) == sorted(x.uri for x in [s["grown"], s["bad"], s["back"]])  # only what is processed

    backfill = select(listed, ledger, "p2", IncrementalConfig(enabled=True, backfill=True), None)
    assert [r for _, r in backfill.process].count("backfill") == 1 and backfill.deleted == []  # `same`; no scope
    assert select(listed, ledger, "p2", CFG, scope).older_pipeline == 1
    full = select(listed, ledger, "p1", IncrementalConfig(), scope)
    assert [r for _, r in full.process] == ["rerun", "changed", "rerun", "rerun", "new", "new", "new"]
