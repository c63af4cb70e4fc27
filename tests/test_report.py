"""`vidbatch report`: rendered in headless Chromium, which must show the run's numbers and load every thumbnail."""
from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import write_deltalake
from typer.testing import CliRunner

from vidbatch.cli import app
from vidbatch.core.errors import ErrorRow
from vidbatch.read.report import gather, label_histogram_svg, render_report, time_ticks
from vidbatch.store.committed import read_table, record_snapshot
from vidbatch.store.tables import videos_table

pytestmark = pytest.mark.e2e

# Appended only to the test's copy of the page: the report itself has no JavaScript.
IMAGE_CHECK = """<script>
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  document.body.dataset.images = images.length;
  document.body.dataset.loaded = images.filter((i) => i.complete && i.naturalWidth > 0).length;
});
</script></body>"""


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    assert path, "headless Chromium is needed for the report test: install it with .ci/install (Debian package chromium)"
    return path


def browse(html: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--user-data-dir={tmp_path / 'profile'}",
         "--virtual-time-budget=5000", *args, html.as_uri()],
        capture_output=True, text=True, timeout=120, check=True,
    )


def loaded_images(html: Path, tmp_path: Path) -> tuple[int, int, str]:
    """(images, images that decoded, DOM) after the page's load event, as Chromium saw it."""
    probe = tmp_path / f"probe-{html.name}"
    probe.write_text(html.read_text().replace("</body>", IMAGE_CHECK))
    dom = browse(probe, tmp_path, "--dump-dom").stdout
    body = re.search(r'<body data-images="(\d+)" data-loaded="(\d+)"', dom)
    assert body, dom[:2000]
    return int(body[1]), int(body[2]), dom


@pytest.fixture(scope="module")
def report(kinds_output, tmp_path_factory) -> Path:
    html = tmp_path_factory.mktemp("report") / "report.html"
    result = CliRunner().invoke(app, ["report", str(kinds_output[0]), "-o", str(html)])
    assert result.exit_code == 0, result.output
    return html


def test_report_in_chromium_shows_the_numbers_and_thumbnails(kinds_output, report, tmp_path):
    _, _, kinds, summary = kinds_output
    html = report.read_text()
    assert "<script" not in html and 'src="http' not in html  # readable without JavaScript, self-contained
    images, loaded, dom = loaded_images(report, tmp_path)
    assert images == summary.counts.clips == 18 and loaded == images
    counts = dict(re.findall(r'id="count-(\w+)"><div class="n">(\d+)</div>', dom))
    assert counts == {"inputs": "7", "ok": "6", "failed": "1", "unreadable": "0", "clips": "18", "errors": "1"}
    assert summary.run_id in dom and f"{summary.wall_s:.1f}" in dom and "Unreadable" in dom
    # headings are file names (the whole URI is the line under it), failed videos first
    headings = re.findall(r'<h3 class="name">([^<]*)</h3>', dom)
    assert headings == ["broken.mp4", *sorted(kinds)]
    assert dom.count('<div class="axis"') == 6 and ">3 s</span>" in dom  # a time axis under every clip bar
    assert "192x144 h264, 10 fps · 3 clips" in dom  # per-video metadata
    assert 'id="legend"' in dom
    assert "<svg" in dom and "clips (top-1 label)" in dom and "top-1 score" in dom  # both histograms, inline
    stages = re.search(r'<table id="stages">.*?</table>', dom, re.S)[0]
    assert summary.run_id in stages
    timings = gather(str(kinds_output[0]))["runs"][0]["stages"]
    assert timings["probe"] > 0 and timings["stream"] > 0 and timings["decode_tasks"] > 0 and timings["inference_actors"] > 0

    png = tmp_path / "report.png"
    browse(report, tmp_path, "--window-size=1280,2000", f"--screenshot={png}")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000


def test_the_image_check_fails_on_broken_thumbnails(report, tmp_path):
    broken = tmp_path / "broken.html"
    broken.write_text(report.read_text().replace("data:image/jpeg;base64,/9j/", "data:image/jpeg;base64,AAAA"))
    images, loaded, _ = loaded_images(broken, tmp_path)
    assert images == 18 and loaded == 0


def test_shots_appear_on_the_timelines(kinds_output, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(kinds_output[0], out)
    video_id = read_table(str(out), "clips", columns=["video_id"])["video_id"][0].as_py()
    shots = pa.table({"video_id": [video_id] * 2, "shot_index": [0, 1], "start_s": [0.0, 1.2], "end_s": [1.2, 3.0]})
    write_deltalake(str(out / "shots"), shots)  # a table no run manifest has recorded: read at its latest version
    data = gather(str(out))
    with_shots = [t for t in data["timelines"] if t.shots]
    assert [t.video_id for t in with_shots] == [video_id] and [s["left"] for s in with_shots[0].shots] == [0.0, 40.0]
    assert render_report(str(out)).count('<div class="bar shots">') == 1


def test_counts_agree_with_the_cli_and_videos_are_capped(kinds_output, tmp_path):
    """An input that could not be listed is an unreadable input, as the CLI counts it, not a failed video; and
    a page with more videos than --max-videos says how many it left out."""
    out = tmp_path / "out"
    shutil.copytree(kinds_output[0], out)
    gone = ErrorRow.from_exception(uri=str(tmp_path / "gone.mp4"), stage="list", exc=FileNotFoundError("no such file"))
    write_deltalake(str(out / "videos"), videos_table([], [gone], Counter(), set(), "zz-missing"), mode="append")
    record_snapshot(str(out), None, "test-append")  # readers' snapshot includes the appended row
    data = gather(str(out), max_videos=3)
    assert {k: data["counts"][k] for k in ("inputs", "ok", "failed", "unreadable")} == {"inputs": 8, "ok": 6, "failed": 1, "unreadable": 1}
    assert [t.name for t in data["timelines"]] == ["broken.mp4", "gone.mp4", "gradient0.mp4"] and data["hidden_videos"] == 5
    html = render_report(str(out), max_videos=3)
    assert "3 videos shown (failed first, then by name); 5 more not shown" in html and "unreadable input" in html


def test_count_axes_have_integer_ticks_and_time_axes_nice_steps():
    ticks = re.findall(r"<!-- (.*?) -->", label_histogram_svg([("a", 3), ("b", 1)]))
    assert ticks[:4] == ["0", "1", "2", "3"]  # not 0.0, 0.5, 1.0, ...
    assert [t["label"] for t in time_ticks(4.5)] == ["0", "1", "2", "3", "4"]
    assert [t["label"] for t in time_ticks(600)] == ["0:00", "2:00", "4:00", "6:00", "8:00", "10:00"]
    assert time_ticks(4.5)[-1]["left"] == pytest.approx(100 * 4 / 4.5, abs=1e-3)


def test_a_videos_current_row_is_the_one_its_last_committed_run_wrote(tmp_path):
    """Run ids need not sort by time (`--run-id` names them): run `zz-first` committed before `aa-second`."""
    import json

    from vidbatch.core.schema import VIDEOS

    out = tmp_path / "out"
    rows = [{"video_id": "v1", "video_uri": "v.mp4", "status": status, "clip_count": n, "run_id": run}
            for status, n, run in (("failed", 0, "zz-first"), ("ok", 3, "aa-second"))]
    for i, row in enumerate(rows):
        write_deltalake(str(out / "videos"), pa.Table.from_pylist([row], schema=VIDEOS), mode="append")
        (out / "runs").mkdir(exist_ok=True)
        manifest = {"run_id": row["run_id"], "status": "complete", "table_versions": {"videos": i},
                    "started_at": f"2026-01-0{i + 1}T00:00:00+00:00", "committed_at": f"2026-01-0{i + 1}T00:10:00+00:00"}
        (out / "runs" / f"{row['run_id']}.json").write_text(json.dumps(manifest))
    data = gather(str(out))
    assert (data["counts"]["ok"], data["counts"]["failed"]) == (1, 0)
    assert [t.status for t in data["timelines"]] == ["ok"]
