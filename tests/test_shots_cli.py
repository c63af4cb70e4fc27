"""`vidbatch shots VIDEO...`: the shot detectors on their own (like `scenedetect list-scenes`), no Ray, no output."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_shots import CUTS, FPS, N_FRAMES, cut_video  # noqa: F401  (the fixture)
from typer.testing import CliRunner

from vidbatch.cli import app


def test_table_lists_the_shots_with_times_and_frames(cut_video: Path, tmp_path: Path):  # noqa: F811
    result = CliRunner().invoke(app, ["shots", str(cut_video)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split()[:2] == ["video", "shot"] and lines[-1] == "(3 shots, detector content)"
    rows = [line.split() for line in lines[2:-1]]
    assert [r[0] for r in rows] == ["cuts.mp4"] * 3  # file names
    assert [r[5] for r in rows] == [f"0-{CUTS[0] - 1}", f"{CUTS[0]}-{CUTS[1] - 1}", f"{CUTS[1]}-{N_FRAMES - 1}"]
    assert rows[1][2] == f"{CUTS[0] / FPS:.3f}" and rows[2][3] == f"{N_FRAMES / FPS:.3f}"
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_csv_and_json_files_and_a_second_detector(cut_video: Path, tmp_path: Path):  # noqa: F811
    target = tmp_path / "shots.csv"
    result = CliRunner().invoke(app, ["shots", str(cut_video), "-f", "csv", "-o", str(target)])
    assert result.exit_code == 0 and "3 shots of 1 videos written" in result.stderr
    header, *rows = target.read_text().splitlines()
    assert header == "video_uri,shot_index,start_s,end_s,length_s,start_frame,end_frame,boundary_score,detector"
    assert [r.split(",")[5] for r in rows] == ["0", str(CUTS[0]), str(CUTS[1])] and rows[0].startswith(str(cut_video))
    transnet = CliRunner().invoke(app, ["shots", str(cut_video), "-d", "transnetv2", "--device", "cpu", "-f", "json"])
    assert transnet.exit_code == 0, transnet.output
    shots = json.loads(transnet.stdout)
    assert [s["start_frame"] for s in shots[:3]] == [0, *CUTS] and {s["detector"] for s in shots} == {"transnetv2"}


@pytest.mark.parametrize(("args", "message"), [
    (["--threshold", "300"], "shots: threshold 300 is outside (0, 255) for detector content"),
    (["-d", "nope"], "shots.detector: unknown shot detector 'nope'"),
])
def test_bad_options_exit_2(cut_video: Path, args, message):  # noqa: F811
    result = CliRunner().invoke(app, ["shots", str(cut_video), *args])
    assert result.exit_code == 2 and result.stderr.strip().startswith(f"error: {message}")
    assert len(result.stderr.strip().splitlines()) == 1


def test_an_unreadable_video_is_reported_and_the_others_listed(cut_video: Path, tmp_path: Path):  # noqa: F811
    result = CliRunner().invoke(app, ["shots", str(tmp_path / "gone.mp4"), str(cut_video), "-f", "json"])
    assert result.exit_code == 3
    assert "gone.mp4: FileNotFoundError" in result.stderr and len(json.loads(result.stdout)) == 3
