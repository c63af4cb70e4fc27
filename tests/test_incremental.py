"""Nightly runs against the ledger, through real Ray and real Parquet: new, skipped, retried, quarantined,
changed, deleted and backfilled videos, and the counts reconcile every night."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from videos import make_video

import vidbatch
from vidbatch.read.query import run_query
from vidbatch.store.committed import read_table

pytestmark = pytest.mark.e2e


def rows(out: Path, table: str) -> list[dict]:
    table_ = read_table(str(out), table)
    return table_.to_pylist() if table_ is not None else []


def nightly(archive: Path, out: Path, **extra) -> vidbatch.store.manifest.RunSummary:
    cfg = {"inputs": [str(archive)], "output": str(out), "tasks": [], "clips": {"clip_seconds": 1.0},
           "sampling": {"frames_per_clip": 2}, "incremental": {"enabled": True, "quarantine_after": 3}}
    for key, value in extra.items():
        cfg[key] = {**cfg.get(key, {}), **value}
    summary = vidbatch.run(cfg)
    c = summary.counts
    assert c.listed == c.new + c.changed + c.backfill + c.skipped + c.failed + c.quarantined
    assert c.inputs == c.listed + c.unreadable_inputs
    return summary


def clip_ids(out: Path, name: str) -> set[str]:
    return {r["clip_id"] for r in rows(out, "clips") if r["video_uri"].endswith(name)}


def test_nightly_lifecycle(ray_session, tmp_path: Path):
    archive, out = tmp_path / "archive", tmp_path / "out"
    archive.mkdir()
    make_video(archive / "a.mp4", seconds=3.0)
    make_video(archive / "b.mp4", seconds=2.0)
    (archive / "bad.mp4").write_bytes(b"not a video at all" * 100)

    first = nightly(archive, out)
    c = first.counts
    assert (c.new, c.skipped, c.failed, c.clips) == (2, 0, 1, 5) and first.exit_code == 3
    before = sorted(r["clip_id"] for r in rows(out, "clips"))

    # nights 2 and 3: good videos skipped without decoding, the bad one retried until quarantined
    for night in (2, 3):
        s = nightly(archive, out)
        assert (s.counts.new, s.counts.skipped, s.counts.failed, s.counts.clips) == (0, 2, 1, 0), night
    latest = [r for r in rows(out, "ledger") if r["video_uri"].endswith("bad.mp4")][-1]
    assert latest["status"] == "quarantined" and latest["consecutive_failures"] == 3
    assert sorted(r["clip_id"] for r in rows(out, "clips")) == before  # nothing duplicated by re-runs

    s = nightly(archive, out)
    assert (s.counts.skipped, s.counts.quarantined, s.counts.failed) == (2, 1, 0) and s.exit_code == 0

    # a changed file is reprocessed and its old clip rows disappear from the committed view
    old_a = clip_ids(out, "a.mp4")
    make_video(archive / "a.mp4", seconds=4.0)
    os.utime(archive / "a.mp4", (1_900_000_000, 1_900_000_000))
    s = nightly(archive, out)
    assert (s.counts.changed, s.counts.skipped, s.counts.quarantined) == (1, 1, 1)
    new_a = clip_ids(out, "a.mp4")
    assert len(new_a) == 4 and not (new_a & old_a)

    # a deleted source is marked in the ledger; its rows stay
    os.remove(archive / "b.mp4")
    s = nightly(archive, out)
    assert s.counts.deleted == 1 and s.counts.listed == 2
    assert [r for r in rows(out, "ledger") if r["video_uri"].endswith("b.mp4")][-1]["status"] == "deleted"

    # a pipeline change: plain nightly keeps the old rows (and says so), --backfill reprocesses under the new
    # fingerprint and counts it as a backfill, as the ledger does
    s = nightly(archive, out, sampling={"frames_per_clip": 3})
    assert (s.counts.skipped, s.counts.changed, s.counts.older_pipeline) == (1, 0, 1)
    s = nightly(archive, out, sampling={"frames_per_clip": 3}, incremental={"backfill": True})
    assert (s.counts.backfill, s.counts.changed, s.counts.older_pipeline) == (1, 0, 0)
    assert [r["reason"] for r in rows(out, "ledger") if r["video_uri"].endswith("a.mp4")][-1] == "backfill"
    a_rows = [r for r in rows(out, "clips") if r["video_uri"].endswith("a.mp4")]
    assert len(a_rows) == 4 and {len(r["frame_times_s"]) for r in a_rows} == {3}
    latest = run_query(str(out), "SELECT regexp_extract(video_uri, '[^/]+$') AS name, status FROM ledger ORDER BY name")
    assert latest.to_pylist() == [{"name": "a.mp4", "status": "ok"}, {"name": "b.mp4", "status": "deleted"},
                                  {"name": "bad.mp4", "status": "quarantined"}]
    assert {r["pipeline"] for r in a_rows} == {s.pipeline}


def test_changed_file_and_full_rerun_do_not_duplicate(ray_session, tmp_path: Path):
    """A full (non-incremental) rerun into the same output replaces the videos' rows instead of adding copies."""
    archive, out = tmp_path / "archive", tmp_path / "out"
    archive.mkdir()
    make_video(archive / "a.mp4", seconds=2.0)
    cfg = {"inputs": [str(archive)], "output": str(out), "tasks": [], "clips": {"clip_seconds": 1.0}}
    vidbatch.run(cfg)
    second = vidbatch.run(cfg)
    assert second.counts.changed == 1  # a rerun of an ok video
    clip_rows = rows(out, "clips")
    assert len(clip_rows) == 2 and {r["run_id"] for r in clip_rows} == {second.run_id}
    shutil.rmtree(archive)


def test_a_night_with_nothing_new_starts_no_ray(ray_session, tmp_path: Path, monkeypatch):
    import vidbatch.pipeline

    archive, out = tmp_path / "archive", tmp_path / "out"
    archive.mkdir()
    make_video(archive / "a.mp4", seconds=2.0)
    first = nightly(archive, out)
    written = sorted(str(f.relative_to(out)) for f in out.rglob("*"))

    def refuse(*args, **kwargs):
        raise AssertionError("Ray was started")

    monkeypatch.setattr(vidbatch.pipeline, "ensure_ray", refuse)
    quiet = nightly(archive, out)
    assert (quiet.counts.listed, quiet.counts.skipped, quiet.exit_code, quiet.status) == (1, 1, 0, "complete")
    assert quiet.committed_at is None and sorted(str(f.relative_to(out)) for f in out.rglob("*")) == written
    assert not (out / "runs" / f"{quiet.run_id}.json").exists() and first.committed_at  # nothing written
