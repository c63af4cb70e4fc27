"""`vidbatch search`: exact self-match, a frame image or a video frame finds its own clip, blocked top-k."""
from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from vidbatch.cli import app
from vidbatch.read.query import run_query
from vidbatch.read.search import SearchQuery, search, top_k


def test_top_k_in_blocks_equals_a_full_sort():
    rng = np.random.default_rng(0)
    matrix = rng.standard_normal((10_000, 32)).astype(np.float32)
    query = rng.standard_normal(32).astype(np.float32)
    idx, sims = top_k(matrix, query, 7, block_rows=999)
    expected = np.argsort(-(matrix @ query))[:7]
    assert idx.tolist() == expected.tolist()
    np.testing.assert_allclose(sims, (matrix @ query)[expected], rtol=1e-6)
    assert top_k(matrix[:3], query, 10)[0].shape == (3,)


def test_query_must_name_one_source():
    with pytest.raises(ValueError, match="exactly one"):
        SearchQuery(like="x", image="y.jpg").check()
    with pytest.raises(ValueError, match="go together"):
        SearchQuery(video="v.mp4").check()


@pytest.mark.e2e
def test_a_clip_finds_itself_first(kinds_output):
    out = str(kinds_output[0])
    clip_id = run_query(out, "SELECT clip_id FROM clips WHERE video_uri LIKE '%stripes1.mp4' AND clip_index = 1")["clip_id"][0].as_py()
    result = CliRunner().invoke(app, ["search", out, "--like", clip_id, "-k", "5", "--format", "json"])
    assert result.exit_code == 0, result.output
    hits = json.loads(result.stdout)
    assert len(hits) == 5 and hits[0]["clip_id"] == clip_id
    assert hits[0]["similarity"] == pytest.approx(1.0, abs=1e-5)
    assert [h["similarity"] for h in hits] == sorted((h["similarity"] for h in hits), reverse=True)
    table = CliRunner().invoke(app, ["search", out, "--like", clip_id, "-k", "2"])
    assert "stripes1.mp4" in table.stdout.splitlines()[2] and "1.0000" in table.stdout.splitlines()[2]


def _frame_at(path: Path, t: float) -> np.ndarray:
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            if frame.time >= t:
                return frame.to_ndarray(format="rgb24")
    raise AssertionError(f"no frame at {t}")


@pytest.mark.e2e
@pytest.mark.parametrize("video", ["gradient2.mp4", "stripes0.mp4"])
def test_an_image_of_a_frame_ranks_its_clip_near_the_top(kinds_output, tmp_path, video):
    out, archive, _, _ = kinds_output
    photo = tmp_path / "frame.jpg"
    Image.fromarray(_frame_at(archive / video, 1.5)).save(photo, quality=90)
    hits = search(str(out), SearchQuery(image=str(photo)), k=3)
    assert Path(hits[0]["video_uri"]).name == video
    assert any(Path(h["video_uri"]).name == video and h["start_s"] <= 1.5 < h["end_s"] for h in hits)


@pytest.mark.e2e
def test_a_video_frame_ranks_its_clip_near_the_top(kinds_output):
    out, archive, _, _ = kinds_output
    hits = search(str(out), SearchQuery(video=str(archive / "stripes1.mp4"), at_s=1.5), k=3)
    assert {Path(h["video_uri"]).name for h in hits} == {"stripes1.mp4"}
    assert any(h["start_s"] <= 1.5 < h["end_s"] for h in hits)
    bad = CliRunner().invoke(app, ["search", str(out), "--video", str(archive / "stripes1.mp4"), "--at", "99"])
    assert bad.exit_code == 2 and "outside" in bad.stderr
