"""Checks of the hostile-corpus generator itself (tests/hostile_corpus.py), not of vidbatch: every kind is made,
fast and deterministically, and each file really has the oddity its kind names."""
from __future__ import annotations

import time
from pathlib import Path

import av
import pytest
from hostile_corpus import GENERATORS, CorpusFile, make_corpus

KNOWN_STAGES = {"list", "probe", "decode", "infer"}
DETERMINISM_KINDS = ["lying_duration_1e12s", "nonmonotonic_pts", "damaged_middle", "random_bytes", "hevc_10bit", "huge_claimed_resolution"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, CorpusFile]:
    t = time.monotonic()
    files = make_corpus(tmp_path_factory.mktemp("hostile"))
    assert time.monotonic() - t < 30, "the corpus must stay quick to generate"
    return {f.kind: f for f in files}


def _open(f: CorpusFile):
    return av.open(str(f.path))


def test_every_kind_is_generated_once(corpus: dict[str, CorpusFile]):
    assert list(corpus) == list(GENERATORS)
    assert len(corpus) >= 25
    names = [f.name for f in corpus.values()]
    assert len(set(names)) == len(names)
    assert {f.category for f in corpus.values()} == {"valid", "bad", "hard"}
    for f in corpus.values():
        assert f.path.is_file() and f.path.name == f.name, f.kind
    assert sorted(p.name for p in next(iter(corpus.values())).path.parent.iterdir()) == sorted(names), "no temporary files left"


def test_expectations_are_well_formed(corpus: dict[str, CorpusFile]):
    for f in corpus.values():
        assert f.note and "\n" not in f.note, f.kind
        if f.expect == "ok":
            assert f.error_stage is None and f.error_type is None, f.kind
            assert f.min_clips is not None and f.max_clips is not None and 1 <= f.min_clips <= f.max_clips, f.kind
        else:
            assert f.expect == "failed" and f.error_stage in KNOWN_STAGES and f.error_type, f.kind
            assert f.min_clips is None and f.max_clips is None, f.kind


def test_ok_files_open_with_a_decodable_video_stream(corpus: dict[str, CorpusFile]):
    for f in corpus.values():
        if f.expect != "ok":
            continue
        with _open(f) as c:
            assert c.streams.video, f.kind
            frame = next(c.decode(video=0), None)
            assert frame is not None and frame.width > 0, f.kind


def test_bad_files_are_bad(corpus: dict[str, CorpusFile]):
    assert corpus["empty_file"].path.stat().st_size == 0
    for kind in ("empty_file", "random_bytes", "text_file", "html_error_page", "truncated_header"):
        with pytest.raises((av.error.InvalidDataError, EOFError)):
            _open(corpus[kind]).close()
    with _open(corpus["audio_only"]) as c:
        assert not c.streams.video and c.streams.audio
    with _open(corpus["raw_h264_annexb"]) as c:
        assert c.format.name == "h264" and c.duration is None
    with _open(corpus["huge_claimed_resolution"]) as c, pytest.raises(av.error.InvalidDataError):
        next(c.decode(video=0))  # the decoder refuses the SPS: no frame at all
    with _open(corpus["zero_frame_durations"]) as c:
        assert not c.streams.video[0].duration and {f.pts for f in c.decode(video=0)} == {0}
    with _open(corpus["zero_timescale"]) as c:
        assert c.streams.video[0].average_rate < 1


def test_odd_files_have_their_oddity(corpus: dict[str, CorpusFile]):
    with _open(corpus["lying_duration_1e12s"]) as c:
        assert c.duration / 1e6 == pytest.approx(1e12) and sum(1 for _ in c.demux(video=0)) == 51  # 50 + flush
    with _open(corpus["audio_longer_than_video"]) as c:
        assert c.duration / 1e6 > 5.3 and c.streams.video[0].duration is None
    with _open(corpus["nonmonotonic_pts"]) as c:
        frames = [(fr.pts, fr.dts) for fr in c.decode(video=0)]
        pts = [p for p, _ in frames]
        dts = [d for _, d in frames if d is not None]
        assert pts != sorted(pts) and dts == sorted(dts)
    with _open(corpus["rotation_display_matrix"]) as c:
        assert next(c.decode(video=0)).rotation in (90, -90, 270)
    with _open(corpus["hevc_10bit"]) as c:
        assert c.streams.video[0].codec_context.name == "hevc" and next(c.decode(video=0)).format.name == "yuv420p10le"
    with _open(corpus["mp4_editlist_delay_1s"]) as c:
        assert c.streams.video[0].start_time * c.streams.video[0].time_base == 1
    with _open(corpus["mp4_editlist_skip_1s"]) as c:
        assert c.streams.video[0].frames == 40 and sum(1 for _ in c.decode(video=0)) == 30
    with _open(corpus["interlaced_tff"]) as c:
        assert next(c.decode(video=0)).interlaced_frame
    with _open(corpus["uhd_4k_3840x2160"]) as c:
        assert (c.streams.video[0].width, c.streams.video[0].height) == (3840, 2160)
    with _open(corpus["damaged_middle"]) as c:
        errors = 0
        for packet in c.demux(video=0):
            try:
                packet.decode()
            except av.error.InvalidDataError:
                errors += 1
        assert errors > 0


def test_generation_is_deterministic(tmp_path: Path, corpus: dict[str, CorpusFile]):
    again = make_corpus(tmp_path, kinds=DETERMINISM_KINDS)
    assert [f.kind for f in again] == DETERMINISM_KINDS
    for f in again:
        assert f.path.read_bytes() == corpus[f.kind].path.read_bytes(), f.kind


def test_unknown_kind_is_an_error(tmp_path: Path):
    with pytest.raises(KeyError, match="no_such_kind"):
        make_corpus(tmp_path, kinds=["no_such_kind"])
