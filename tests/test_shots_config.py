from __future__ import annotations

import pytest

from vidbatch.config import ConfigError
from vidbatch.job import load_config
from vidbatch.plan.clips import max_samples_per_clip


def test_defaults_keep_fixed_clips_and_transnetv2():
    cfg = load_config()
    assert cfg.clips.clip_mode == "fixed" and cfg.shots.detector == "transnetv2"


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["clips.clip_mode=scenes"], r"clips\.clip_mode: Input should be 'fixed' or 'shots'"),
        (["shots.detector=nope"], r"shots\.detector: unknown shot detector 'nope'; known: \['content', 'transnetv2'\]"),
        (["shots.threshold=1.5"], r"shots: threshold 1.5 is outside \(0, 1\) for detector transnetv2"),
        (["shots.detector=content", "shots.threshold=300"], r"shots: threshold 300 is outside \(0, 255\) for detector content"),
        (["shots.detector=content", "shots.threshold=0.5"], r"shots: threshold 0.5 is below 1 for detector content, whose scores are mean HSV differences on a 0-255 scale \(default 27\); a probability like 0.5 is on transnetv2's scale"),
        (["shots.min_shot_frames=0"], r"shots\.min_shot_frames"),
        (["shots.batch_size=0"], r"shots\.batch_size"),
        (["clips.max_clip_seconds=0"], r"clips\.max_clip_seconds"),
        (["clips.min_clip_seconds=3", "clips.max_clip_seconds=5"], r"clips: min_clip_seconds \(3\) must be at most half of max_clip_seconds \(5\)"),
        (["shots.frames=3"], r"shots\.frames: Extra inputs are not permitted"),
    ],
)
def test_bad_shot_settings_name_the_field(sets, message):
    with pytest.raises(ConfigError, match=message):
        load_config(sets=sets)


def test_sample_fps_frame_axis_uses_the_longest_shot_clip():
    cfg = load_config(sets=["sampling.sample_fps=2", "clips.clip_mode=shots", "clips.max_clip_seconds=12"])
    assert max_samples_per_clip(cfg.clips, cfg.sampling) == 24
    with pytest.raises(ConfigError, match=r"clips\.max_clip_seconds gives 1200 frames"):
        load_config(sets=["sampling.sample_fps=100", "clips.clip_mode=shots", "clips.max_clip_seconds=12"])


def test_a_shot_actor_pool_that_leaves_no_cpu_for_decoding_is_refused(ray_session):
    from vidbatch.pipeline import _check_capacity

    cpus = int(ray_session.cluster_resources()["CPU"])
    cfg = load_config(sets=["clips.clip_mode=shots", f"shots.num_actors={cpus}", "tasks=[]"])
    with pytest.raises(ConfigError, match=r"shots\.num_actors x shots\.num_cpus"):
        _check_capacity(cfg)
    with pytest.raises(ConfigError, match=r"shots asks for GPUs"):
        gpus = int(ray_session.cluster_resources().get("GPU", 0))
        _check_capacity(load_config(sets=["clips.clip_mode=shots", f"shots.num_gpus={gpus + 1}", "tasks=[]"]))
    _check_capacity(load_config(sets=["clips.clip_mode=shots", f"shots.num_actors={cpus}", "shots.detector=content", "tasks=[]"]))


def test_each_detector_checks_its_own_options():
    from vidbatch.shots import get_detector

    content = get_detector("content")
    content.check_options(None, None)
    content.check_options(27.0, 15)
    with pytest.raises(ValueError, match="below 1 for detector content"):
        content.check_options(0.5, None)
    with pytest.raises(ValueError, match="below 1 for detector content"):
        content(threshold=0.5)  # constructing one checks too
    get_detector("transnetv2").check_options(0.5, 1)
    with pytest.raises(ValueError, match=r"outside \(0, 1\) for detector transnetv2"):
        get_detector("transnetv2").check_options(27.0, None)
