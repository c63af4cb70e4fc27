"""segment, detect, action and embed: tiny TorchScript models with known outputs on generated videos, and the real
torchvision architectures with random weights for shapes and schema. No Ray (test_multitask_e2e.py runs Ray)."""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch
from PIL import Image
from videos import make_video

from vidbatch.config import ConfigError, InferenceConfig, TaskConfig
from vidbatch.decode.decode_stage import DecodeStage, frames_batch
from vidbatch.infer.actor import ClipInferenceActor
from vidbatch.infer.tasks import frame_spec_for, task_output_fields, task_stacks
from vidbatch.job import validate_config
from vidbatch.plan.clips import ClipPlan, WorkUnit
from vidbatch.plan.frame_plan import FrameLayout, FrameSpec

W, H = 96, 64
SQUARE = (48, 16, 80, 48)  # x1, y1, x2, y2 of the red square in source pixels
RED_AREA = (SQUARE[2] - SQUARE[0]) * (SQUARE[3] - SQUARE[1]) / (W * H)


class RedSegmenter(torch.nn.Module):
    """Class 1 where a pixel is red after ImageNet normalisation (R above its mean, G below), else class 0."""

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        red = ((x[:, 0] > 0) & (x[:, 1] < 0)).float()
        return {"out": torch.stack([1 - red, red], dim=1)}


class RedDetector(torch.nn.Module):
    """torchvision's detection contract: 0..1 images in, per image the box around red pixels (score 0.9, label 1)
    and a decoy box (score 0.2, label 2) that the threshold must drop."""

    def forward(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        out: list[dict[str, torch.Tensor]] = []
        for img in images:
            where = ((img[0] > 0.6) & (img[1] < 0.4)).nonzero()
            ys, xs = where[:, 0], where[:, 1]
            if xs.numel() == 0:
                out.append({"boxes": torch.zeros((0, 4)), "labels": torch.zeros(0, dtype=torch.int64), "scores": torch.zeros(0)})
                continue
            box = torch.stack([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]).float()
            out.append({"boxes": torch.stack([box, box / 2]), "labels": torch.tensor([1, 2]), "scores": torch.tensor([0.9, 0.2])})
        return out


class RedAction(torch.nn.Module):
    """(B, 3, T, H, W) -> 400 logits: class 1 when some frame of the stack has red pixels, else class 0."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        red = ((x[:, 0] > 0) & (x[:, 1] < 0)).flatten(1).any(dim=1).float()
        logits = torch.zeros(x.shape[0], 400)
        logits[:, 0] = 1 - red
        logits[:, 1] = red
        return logits * 10


def scripted(module: torch.nn.Module, path: Path) -> str:
    torch.jit.save(torch.jit.script(module), str(path))
    return str(path)


def red_square_frame(red: bool = True) -> np.ndarray:
    img = np.zeros((H, W, 3), np.uint8)
    if red:
        x1, y1, x2, y2 = SQUARE
        img[y1:y2, x1:x2] = (255, 0, 0)
    return img


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("models")
    return {name: scripted(m, root / f"{name}.pt") for name, m in
            [("segment", RedSegmenter()), ("detect", RedDetector()), ("action", RedAction())]}


@pytest.fixture(scope="module")
def red_video(tmp_path_factory) -> Path:
    """2 s at 10 fps: red square in the first second only."""
    frames = [red_square_frame(i < 10) for i in range(20)]
    return make_video(tmp_path_factory.mktemp("videos") / "red.mp4", fps=10, width=W, height=H, frames=frames)


def decoded_batch(video: Path, tasks: list[TaskConfig], shared_times: tuple[float, ...]) -> dict:
    """What the decode stage hands the actor for the job's tasks: one clip per second."""
    clips = tuple(ClipPlan(i, f"c{i}", float(i), i + 1.0, tuple(i + t for t in shared_times)) for i in range(2))
    unit = WorkUnit(uri=str(video), video_id="v", unit_index=0, start_offset_s=0.0, keyframe_interval_s=1.0, clips=clips)
    layout = FrameLayout(len(shared_times), task_stacks(tasks))
    stage = DecodeStage(frame_spec_for(tasks), "auto", 0, layout.total, layout=layout)
    parts = list(stage({"unit_json": np.array([json.dumps(unit.to_dict())])}))
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def run_tasks(video: Path, tasks: list[TaskConfig], shared_times=(0.15, 0.55)) -> list[dict]:
    actor = ClipInferenceActor(tasks, InferenceConfig(batch_size=4))
    table = actor(decoded_batch(video, tasks, shared_times))
    assert table.schema == actor.schema
    return table.to_pylist()


def test_segment_fraction_equals_the_red_square_area(models, red_video):
    cfg = TaskConfig(task="segment", model="torchscript", weights=None, weights_path=models["segment"], masks=True)
    first, second = run_tasks(red_video, [cfg])
    fractions = {d["label"]: d["fraction"] for d in first["seg_class_fractions"]}
    assert fractions["class_1"] == pytest.approx(RED_AREA, abs=0.01)
    assert fractions["class_0"] == pytest.approx(1 - RED_AREA, abs=0.01)
    assert {d["label"] for d in second["seg_class_fractions"]} == {"class_0"}  # no red in the second clip
    assert first["seg_model"] == "torchscript:random"
    (mask, _) = first["seg_masks"]
    # masks cover the whole source frame at the model's input size (short side 520)
    assert mask["height"] == 520 and abs(mask["width"] - 780) <= 1
    pixels = np.asarray(Image.open(io.BytesIO(mask["png"])))
    assert pixels.shape == (mask["height"], mask["width"]) and (pixels == 1).mean() == pytest.approx(RED_AREA, abs=0.01)


def test_detect_boxes_are_in_source_pixels_and_counts_per_class(models, red_video):
    cfg = TaskConfig(task="detect", model="torchscript", weights=None, weights_path=models["detect"], score_threshold=0.5)
    first, second = run_tasks(red_video, [cfg])
    assert len(first["det_detections"]) == 2  # one per sampled frame; the 0.2 decoys are below the threshold
    for frame_index, det in enumerate(first["det_detections"]):
        assert det["frame_index"] == frame_index and det["label"] == "class_1" and det["score"] == pytest.approx(0.9)
        assert [det["x1"], det["y1"], det["x2"], det["y2"]] == pytest.approx(SQUARE, abs=1.5)
    assert first["det_counts"] == [{"label": "class_1", "count": 1}]
    assert second["det_detections"] == [] and second["det_counts"] == [] and second["error_stage"] is None


def test_a_lower_threshold_keeps_more_and_names_come_from_the_weights(models, red_video):
    cfg = TaskConfig(task="detect", model="torchscript", weights="SSDLite320_MobileNet_V3_Large_Weights.COCO_V1",
                     weights_path=models["detect"], score_threshold=0.1)
    first, _ = run_tasks(red_video, [cfg])
    assert first["det_counts"] == [{"label": "person", "count": 1}, {"label": "bicycle", "count": 1}]
    assert first["det_model"] == "torchscript:COCO_V1"


def test_action_reads_its_own_stack_and_names_kinetics_classes(models, red_video):
    cfg = TaskConfig(task="action", model="torchscript", weights="R3D_18_Weights.KINETICS400_V1",
                     weights_path=models["action"], top_k=2)
    assert task_stacks([cfg])[0].frames == 16
    first, second = run_tasks(red_video, [cfg], shared_times=(0.05, 0.95))
    # 16 frames at 15 fps centred on each 1 s clip: all inside the clip, red only in the first
    assert first["action_labels"] == ["air drumming", "abseiling"] and second["action_labels"][0] == "abseiling"
    assert first["action_scores"][0] == pytest.approx(np.exp(10) / (np.exp(10) + 399), rel=1e-5)
    assert len(first["frame_times_s"]) == 2


def test_all_tasks_share_one_decode(models, red_video, mobilenet_weights):
    tasks = [
        TaskConfig(weights_path=mobilenet_weights, top_k=1),
        TaskConfig(task="segment", model="torchscript", weights=None, weights_path=models["segment"]),
        TaskConfig(task="detect", model="torchscript", weights=None, weights_path=models["detect"]),
        TaskConfig(task="action", model="torchscript", weights="R3D_18_Weights.KINETICS400_V1", weights_path=models["action"]),
    ]
    spec = frame_spec_for(tasks)
    assert spec == FrameSpec(520, 520, letterbox=True)
    batch = decoded_batch(red_video, tasks, (0.15, 0.55))
    assert batch["frames"].shape == (2, 2 + 16, 520, 520, 3)
    first, _ = ClipInferenceActor(tasks, InferenceConfig(batch_size=8))(batch).to_pylist()
    assert len(first["labels"]) == 1 and len(first["embedding"]) == 1280
    assert first["det_detections"][0]["x1"] == pytest.approx(SQUARE[0], abs=1.5)
    assert first["action_labels"][0] == "air drumming"
    seg = {d["label"]: d["fraction"] for d in first["seg_class_fractions"]}
    assert seg["class_1"] == pytest.approx(RED_AREA, abs=0.01)


def test_classify_reads_the_same_crop_from_a_shared_canvas(models, red_video, mobilenet_weights):
    """Adding a full-frame task changes classify's input only by resampling, not its framing."""
    classify = TaskConfig(weights_path=mobilenet_weights, top_k=3)
    alone = run_tasks(red_video, [classify])
    segment = TaskConfig(task="segment", model="torchscript", weights=None, weights_path=models["segment"])
    shared = run_tasks(red_video, [classify, segment])
    for a, b in zip(alone, shared):
        assert np.dot(a["embedding"], b["embedding"]) > 0.97


def test_embed_gives_classify_embedding_without_labels(red_video, mobilenet_weights):
    classify = run_tasks(red_video, [TaskConfig(weights_path=mobilenet_weights)])
    embed = run_tasks(red_video, [TaskConfig(task="embed", weights_path=mobilenet_weights)])
    assert "labels" not in embed[0] and embed[0]["model"] == classify[0]["model"]
    for a, b in zip(classify, embed):
        assert np.asarray(b["embedding"]) == pytest.approx(np.asarray(a["embedding"]), abs=1e-5)


@pytest.mark.parametrize(
    ("task", "model", "columns"),
    [
        ("segment", "lraspp_mobilenet_v3_large", ["seg_model", "seg_class_fractions", "seg_masks"]),
        ("detect", "ssdlite320_mobilenet_v3_large", ["det_model", "det_detections", "det_counts"]),
        ("action", "r3d_18", ["action_model", "action_labels", "action_scores"]),
        ("embed", "resnet18", ["model", "embedding"]),
    ],
)
def test_torchvision_architectures_with_random_weights(task, model, columns):
    cfg = TaskConfig(task=task, model=model, weights=None, top_k=3)
    fields = task_output_fields([cfg])
    assert [f.name for f in fields] == columns
    spec = frame_spec_for([cfg])
    stack = task_stacks([cfg])[0]
    shared = 1 if stack else 2  # a stack task's frames follow the job's shared samples
    n = shared + (stack.frames if stack else 0)
    row = {"video_id": "v", "video_uri": "v.mp4", "clip_id": "c", "clip_index": 0, "start_s": 0.0, "end_s": 1.0,
           "frames": np.random.default_rng(0).integers(0, 255, (n, spec.crop, spec.crop, 3), dtype=np.uint8),
           "frame_times_s": [0.0, 0.5][:shared], "source_wh": (160, 90)}
    batch = frames_batch([row], len(row["frames"]), spec)
    table = ClipInferenceActor([cfg], InferenceConfig(batch_size=16))(batch)
    assert table.schema.field(columns[-1]).type == next(f.type for f in fields if f.name == columns[-1])
    values = table.to_pylist()[0]
    assert all(values[c] is not None for c in columns if c != "seg_masks")
    assert values[columns[0]].endswith(":random")


@pytest.mark.parametrize(
    ("tasks", "message"),
    [
        ([{"task": "classify"}, {"task": "embed"}], r"tasks.1 \(embed\) would write columns \['model', 'embedding'\]"),
        ([{"task": "segment"}], "segment: model 'mobilenet_v2' is not one of"),
        ([{"task": "detect", "model": "torchscript", "weights": None}], "torchscript needs weights_path"),
        ([{"task": "action", "model": "r3d_18", "weights": "COCO_V1"}], "r3d_18 has no weights 'COCO_V1'"),
    ],
)
def test_bad_task_configs_are_refused_with_the_field(tasks, message):
    with pytest.raises(ConfigError, match=message):
        validate_config({"tasks": tasks})


def test_columns_are_typed_for_duckdb(models, red_video, tmp_path):
    import duckdb
    import pyarrow.parquet as pq

    cfg = TaskConfig(task="detect", model="torchscript", weights=None, weights_path=models["detect"])
    actor = ClipInferenceActor([cfg], InferenceConfig(batch_size=4))
    table = actor(decoded_batch(red_video, [cfg], (0.15, 0.55)))
    pq.write_table(table, tmp_path / "t.parquet")
    rows = duckdb.sql(
        f"select clip_id, d.label, d.x1 from read_parquet('{tmp_path / 't.parquet'}'), unnest(det_detections) as u(d)"
    ).fetchall()
    assert [(c, label) for c, label, _ in rows] == [("c0", "class_1"), ("c0", "class_1")]
    assert isinstance(table.schema.field("det_counts").type, pa.ListType)


SYNCS = ("cpu", "tolist", "item", "numpy", "__float__", "__int__", "__bool__", "__index__")


def host_syncs(monkeypatch, run) -> int:
    """Calls that copy a tensor to the host (each one waits for a GPU) made while `run()` runs."""
    calls = []
    for name in SYNCS:
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, **kwargs):
            calls.append(1)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    try:
        run()
    finally:
        monkeypatch.undo()
    return len(calls)


@pytest.mark.parametrize("task", ["classify", "segment", "detect", "action"])
def test_results_leave_the_device_once_per_batch_not_per_clip(task, models, mobilenet_weights, monkeypatch):
    from vidbatch.infer.tasks import get_task

    cfg = {
        "classify": TaskConfig(weights_path=mobilenet_weights),
        "segment": TaskConfig(task="segment", model="torchscript", weights=None, weights_path=models["segment"], masks=True),
        "detect": TaskConfig(task="detect", model="torchscript", weights=None, weights_path=models["detect"]),
        "action": TaskConfig(task="action", model="torchscript", weights="R3D_18_Weights.KINETICS400_V1",
                             weights_path=models["action"]),
    }[task]
    runner = get_task(task)(cfg, torch.device("cpu"))
    per_clip = 16 if task == "action" else 2
    side = 224 if task == "classify" else 64

    def predict(n_clips: int) -> None:
        frames = torch.from_numpy(np.stack([red_square_frame()] * (n_clips * per_clip)))
        frames = torch.nn.functional.interpolate(frames.permute(0, 3, 1, 2).float(), size=(side, side)).permute(0, 2, 3, 1)
        runner.predict(frames.to(torch.uint8).contiguous(), [per_clip] * n_clips, batch_size=64)

    assert host_syncs(monkeypatch, lambda: predict(2)) == host_syncs(monkeypatch, lambda: predict(6))


def test_segment_drops_the_auxiliary_head(tmp_path):
    """torchvision's segmentation checkpoints carry an auxiliary head (loaded so the state dict matches); inference
    never computes it."""
    import torchvision

    from vidbatch.infer.models import load_task_model, resolve_task_weights

    net = torchvision.models.get_model("deeplabv3_mobilenet_v3_large", weights=None, weights_backbone=None, aux_loss=True)
    torch.save(net.state_dict(), tmp_path / "seg.pth")
    cfg = TaskConfig(task="segment", model="deeplabv3_mobilenet_v3_large", weights="DEFAULT",
                     weights_path=str(tmp_path / "seg.pth"))
    loaded = load_task_model(cfg, resolve_task_weights(cfg), weights_backbone=None)
    assert loaded.aux_classifier is None
    with torch.inference_mode():
        assert set(loaded(torch.zeros(1, 3, 64, 64))) == {"out"}


def test_detect_never_runs_under_bf16_autocast(models, mobilenet_weights):
    """torchvision decodes boxes in the regression head's dtype: bf16 would step boxes by about 4 px."""
    import contextlib

    tasks = [TaskConfig(weights_path=mobilenet_weights),
             TaskConfig(task="detect", model="torchscript", weights=None, weights_path=models["detect"])]
    for precision, detect_autocasts in [("bf16", False), ("fp16", True)]:
        actor = ClipInferenceActor(tasks, InferenceConfig(precision=precision))
        actor.device = torch.device("cuda")  # what the actor would pick on a GPU; nothing runs here
        classify_ctx, detect_ctx = (actor._autocast(t) for t in actor.tasks)
        assert isinstance(classify_ctx, torch.autocast)
        assert isinstance(detect_ctx, torch.autocast) is detect_autocasts
        assert isinstance(detect_ctx, contextlib.nullcontext) is not detect_autocasts
