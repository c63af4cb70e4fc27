"""The whole hostile corpus (tests/hostile_corpus.py, 34 kinds) in one run through real Ray: each file ends as its
kind says (status, the one typed error row of a bad file, clip counts), no file stalls or sinks the run, and the
good files' clips are classified."""
from __future__ import annotations

import time
from pathlib import Path

import pytest
from hostile_corpus import CorpusFile, make_corpus

import vidbatch
from vidbatch.config import DEFAULT_EXTENSIONS
from vidbatch.store.committed import read_table

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def corpus_run(ray_session, mobilenet_weights: str, tmp_path_factory: pytest.TempPathFactory):
    files = make_corpus(tmp_path_factory.mktemp("hostile"))
    root = files[0].path.parent
    # a directory lists only video suffixes: the raw .h264 stream is named on its own, as a user would
    named = [str(f.path) for f in files if f.path.suffix.lower() not in DEFAULT_EXTENSIONS]
    out = tmp_path_factory.mktemp("hostile-run") / "out"
    started = time.monotonic()
    summary = vidbatch.run({
        "inputs": [str(root), *named], "output": str(out),
        "sampling": {"frames_per_clip": 2},  # clip windows stay the defaults the corpus's clip counts assume
        "tasks": [{"task": "classify", "weights_path": mobilenet_weights, "top_k": 1}],
        "ray": {"progress_bars": False},
    })
    tables = {name: read_table(str(out), name).to_pylist() for name in ("videos", "errors", "clips")}
    return {f.kind: f for f in files}, summary, tables, time.monotonic() - started


def by_file(rows: list[dict], files: dict[str, CorpusFile]) -> dict[str, list[dict]]:
    kind_of = {f.name: kind for kind, f in files.items()}
    grouped: dict[str, list[dict]] = {kind: [] for kind in files}
    for r in rows:
        grouped[kind_of[Path(r["video_uri"]).name]].append(r)
    return grouped


def test_every_file_ends_as_its_kind_expects(corpus_run):
    files, summary, tables, seconds = corpus_run
    videos, errors, clips = (by_file(tables[t], files) for t in ("videos", "errors", "clips"))
    outcome = {}
    for kind, f in files.items():
        (video,) = videos[kind]
        failures = [e for e in errors[kind] if e["error_type"] != "DamagedClip"]
        outcome[kind] = (video["status"], [(e["stage"], e["error_type"]) for e in failures])
        if f.expect == "ok":
            assert f.min_clips <= video["clip_count"] <= f.max_clips, (kind, video["clip_count"])
            assert len(clips[kind]) == video["clip_count"], kind
            if f.video_seconds is not None:
                assert video["duration_s"] == pytest.approx(f.video_seconds, abs=0.35), kind
        else:
            assert video["clip_count"] == 0 and not clips[kind], kind
    expected = {k: (f.expect, [] if f.expect == "ok" else [(f.error_stage, f.error_type)]) for k, f in files.items()}
    assert outcome == expected
    c = summary.counts
    assert (c.listed, c.failed, c.ok) == (34, 10, 24) and summary.exit_code == 3 and summary.status == "partial"
    assert seconds < 600  # the 1e12-second file plans 3 clips; nothing stalls


def test_clips_are_inside_their_windows_and_classified(corpus_run):
    files, _, tables, _ = corpus_run
    for kind, rows in by_file(tables["clips"], files).items():
        for r in rows:
            assert r["labels"] and len(r["frame_times_s"]) == 2, kind
            if kind != "vfr_mp4":  # a VFR frame on screen at a clip's start may have begun before it
                assert r["start_s"] - 1e-6 <= r["frame_times_s"][0] <= r["frame_times_s"][1] < r["end_s"], (kind, r)


def test_hard_files_in_detail(corpus_run):
    files, _, tables, _ = corpus_run
    videos = {k: v[0] for k, v in by_file(tables["videos"], files).items()}
    errors = by_file(tables["errors"], files)
    assert videos["audio_longer_than_video"]["duration_s"] == pytest.approx(4.0)  # not the audio's 5.464 s
    assert videos["lying_duration_1e12s"]["duration_s"] == pytest.approx(5.0)
    damaged = videos["damaged_middle"]
    assert damaged["status"] == "ok" and damaged["clip_count"] == 5 and damaged["damaged_clips"] == 1
    assert all(v["damaged_clips"] == 0 for k, v in videos.items() if k != "damaged_middle" and v["status"] == "ok")
    assert videos["rotation_display_matrix"]["rotation"] == 90
    assert videos["mpeg_ts_pts_wrap"]["clip_count"] == 2
    for kind in ("empty_file", "zero_timescale", "lying_duration_1e12s"):
        assert all(e["message"] for e in errors[kind])
    (zero,) = errors["zero_timescale"]
    assert "one frame every 1024 s" in zero["message"]


def test_a_spent_time_budget_is_one_timeout_row_per_video_and_the_run_finishes(ray_session, tmp_path: Path):
    files = make_corpus(tmp_path / "in", kinds=["plain_h264_mp4", "lying_duration_1e12s"])
    summary = vidbatch.run({"inputs": [str(tmp_path / "in")], "output": str(tmp_path / "out"), "tasks": [],
                            "probe": {"timeout_s": 1e-9}, "ray": {"progress_bars": False}})
    errors = read_table(str(tmp_path / "out"), "errors").to_pylist()
    assert sorted((Path(e["video_uri"]).name, e["stage"], e["error_type"]) for e in errors) == sorted(
        (f.name, "probe", "Timeout") for f in files)
    assert "budget (probe.timeout_s)" in errors[0]["message"]
    assert summary.exit_code == 3 and summary.counts.failed == 2
