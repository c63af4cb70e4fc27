from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vidbatch.cli import app
from vidbatch.config import ConfigError
from vidbatch.job import load_config


def test_defaults_are_valid():
    cfg = load_config(overrides={"inputs": ["x.mp4"], "output": "out"})
    assert cfg.clips.stride == cfg.clips.clip_seconds
    assert cfg.tasks[0].task == "classify" and cfg.tasks[0].model == "mobilenet_v2"


def test_unknown_key_names_the_field(tmp_path: Path):
    p = tmp_path / "job.yaml"
    p.write_text("clips:\n  clip_secs: 3\n")
    with pytest.raises(ConfigError, match=r"clips\.clip_secs: Extra inputs are not permitted"):
        load_config(p)


def test_bad_value_names_the_field():
    with pytest.raises(ConfigError, match=r"tasks\.0\.top_k"):
        load_config(sets=["tasks.0.top_k=0"])
    with pytest.raises(ConfigError, match=r"clips\.last_clip"):
        load_config(sets=["clips.last_clip=maybe"])


def test_unknown_task_is_rejected():
    with pytest.raises(ConfigError, match=r"tasks\.0\.task: unknown task 'nope'"):
        load_config(sets=["tasks.0.task=nope"])


def test_sampling_rules_are_exclusive():
    with pytest.raises(ConfigError, match="either frames_per_clip or sample_fps"):
        load_config(sets=["sampling.frames_per_clip=4", "sampling.sample_fps=2"])
    cfg = load_config(sets=["sampling.sample_fps=2"])
    assert cfg.sampling.frames_per_clip is None


def test_set_overrides_nested_and_typed(tmp_path: Path):
    p = tmp_path / "job.yaml"
    p.write_text("clips:\n  clip_seconds: 3\ntasks:\n  - model: resnet18\n    weights: null\n")
    cfg = load_config(p, sets=["clips.stride_seconds=1.5", "tasks.0.top_k=3"])
    assert cfg.clips.clip_seconds == 3 and cfg.clips.stride == 1.5
    assert cfg.tasks[0].model == "resnet18" and cfg.tasks[0].weights is None and cfg.tasks[0].top_k == 3
    assert load_config(p, sets=["tasks=[]"]).tasks == []


def test_cli_bad_config_exits_2_naming_field(tmp_path: Path):
    p = tmp_path / "job.yaml"
    p.write_text("decode:\n  strategy: fastest\n")
    result = CliRunner().invoke(app, ["run", "x.mp4", "-o", str(tmp_path / "out"), "--config", str(p)])
    assert result.exit_code == 2
    assert "decode.strategy" in result.output


def test_cli_missing_output_exits_2():
    result = CliRunner().invoke(app, ["run", "x.mp4"])
    assert result.exit_code == 2
    assert "output" in result.output


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("tasks.0.model=notamodel", r"tasks\.0: Unknown model notamodel"),
        ("tasks.0.weights=IMAGENET9K", r"tasks\.0: mobilenet_v2 has no weights 'IMAGENET9K'"),
        ("tasks.0.weights_path=/nonexistent/mnv2.pth", r"tasks\.0\.weights_path: /nonexistent/mnv2.pth does not exist"),
    ],
)
def test_models_and_weights_are_resolved_up_front(setting: str, message: str, tmp_path: Path):
    with pytest.raises(ConfigError, match=message):
        load_config(sets=[setting])
    result = CliRunner().invoke(app, ["run", "x.mp4", "-o", str(tmp_path), "--set", setting])
    assert result.exit_code == 2 and "Traceback" not in result.output


def test_sample_fps_survives_revalidation_of_a_config_object():
    from vidbatch.job import validate_config

    cfg = load_config(sets=["sampling.sample_fps=4"])
    assert validate_config(cfg).sampling.sample_fps == 4
    with pytest.raises(ConfigError, match="set frames_per_clip or sample_fps"):
        load_config(sets=["sampling.frames_per_clip=null"])


def test_samples_per_clip_are_bounded():
    with pytest.raises(ConfigError, match=r"sampling.sample_fps x clips.clip_seconds gives 600000 frames per clip"):
        load_config(sets=["sampling.sample_fps=10000", "clips.clip_seconds=60"])


def test_invalid_yaml_in_set_exits_2(tmp_path: Path):
    result = CliRunner().invoke(app, ["run", "x.mp4", "-o", str(tmp_path), "--set", "clips.clip_seconds=[1"])
    assert result.exit_code == 2 and "not valid YAML" in result.output


def test_weights_of_another_model_are_refused():
    with pytest.raises(ConfigError, match="resnet18 has no weights 'MobileNet_V2_Weights.IMAGENET1K_V1'"):
        load_config(sets=["tasks.0.model=resnet18", "tasks.0.weights=MobileNet_V2_Weights.IMAGENET1K_V1"])


@pytest.mark.parametrize("path", sorted((Path(__file__).parents[1] / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_example_configs_validate(path: Path):
    """Every shipped example config stays valid as the config grows."""
    load_config(path)


def test_readme_configuration_table_is_one_table_of_real_fields():
    """One table (a blank line once split it, with rows under no header), each field named once, every name a
    real config field."""
    from vidbatch.config import JobConfig, TaskConfig

    section = (Path(__file__).parents[1] / "README.md").read_text().split("### Configuration reference\n\n", 1)[1]
    table = section.split("\n\n", 1)[0].splitlines()
    assert table[0] == "| field | default | meaning |" and all(line.startswith("|") for line in table)
    named = []
    for row in table[2:]:
        prefix = ""
        for token in re.findall(r"`([^`]+)`", row.split("|")[1]):
            if "." in token:
                prefix, _, token = token.rpartition(".")
            named.append(f"{prefix}.{token}" if prefix else token)
    assert len(named) == len(set(named)), [n for n in named if named.count(n) > 1]
    for name in named:
        model, *path = name.split(".")
        fields = JobConfig.model_fields
        if model == "tasks[]":
            fields, model = TaskConfig.model_fields, path.pop(0)
        assert model in fields, name
        for key in path:
            fields = fields[model].annotation.model_fields
            assert key in fields, name
            model = key


def test_precision_is_part_of_the_pipeline_and_the_job():
    from vidbatch.store.fingerprint import job_key, pipeline_fingerprint, pipeline_identity

    def keys(*sets: str) -> tuple[str, str]:
        cfg = load_config(overrides={"inputs": ["x.mp4"], "output": "out"}, sets=list(sets))
        pipeline = pipeline_fingerprint(pipeline_identity(cfg))
        return pipeline, job_key(cfg, pipeline)

    fp32, bf16, fp16 = keys(), keys("inference.precision=bf16"), keys("inference.precision=fp16")
    assert len({fp32[0], bf16[0], fp16[0]}) == 3 and len({fp32[1], bf16[1], fp16[1]}) == 3
    assert keys("inference.precision=fp32") == fp32
    assert "precision" not in pipeline_identity(load_config(overrides={"inputs": ["x.mp4"]}))  # fp32 outputs keep their fingerprint
    assert keys("tasks=[]", "inference.precision=bf16") == keys("tasks=[]")  # nothing is inferred
