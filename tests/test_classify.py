from __future__ import annotations

import av
import numpy as np
import pyarrow as pa
import pytest
import torch

from vidbatch.config import TaskConfig
from vidbatch.decode.decoder import frame_to_array
from vidbatch.infer.tasks import TASKS, frame_spec_for, get_task, task_output_fields

CATS = {"tabby", "tiger cat", "Egyptian cat", "Persian cat", "Siamese cat"}


@pytest.fixture(scope="module")
def classifier(mobilenet_weights):
    cfg = TaskConfig(model="mobilenet_v2", weights="IMAGENET1K_V1", weights_path=mobilenet_weights, top_k=5)
    return cfg, get_task("classify")(cfg, torch.device("cpu"))


def chelsea_frames(cfg: TaskConfig) -> torch.Tensor:
    from skimage import data

    frame = av.VideoFrame.from_ndarray(data.chelsea(), format="rgb24")
    return torch.from_numpy(frame_to_array(frame, get_task("classify").frame_spec(cfg)))[None]


def test_registry_lists_classify():
    assert "classify" in TASKS.known()
    with pytest.raises(KeyError, match="unknown task"):
        get_task("nope")


def test_chelsea_is_a_cat_with_real_weights(classifier):
    cfg, task = classifier
    out = task.predict(chelsea_frames(cfg), [1], batch_size=8)
    assert out["labels"][0][0] in CATS, out["labels"][0]
    assert out["scores"][0][0] > 0.3
    assert out["scores"][0] == sorted(out["scores"][0], reverse=True)
    assert out["model"] == ["mobilenet_v2:IMAGENET1K_V1"]


def test_embeddings_have_unit_norm_and_clip_means(classifier):
    cfg, task = classifier
    cat = chelsea_frames(cfg)
    noise = torch.from_numpy(np.random.default_rng(0).integers(0, 255, (3, 224, 224, 3), dtype=np.uint8))
    frames = torch.cat([cat, noise])
    out = task.predict(frames, [2, 2], batch_size=3)  # batch boundaries that split clips
    for emb in out["embedding"]:
        assert emb.shape == (1280,) and emb.dtype == np.float32
        assert np.linalg.norm(emb) == pytest.approx(1.0, abs=1e-5)
    probs, _ = task.forward_frames(frames, batch_size=4)
    top = probs[:2].mean(0).topk(5)
    assert out["scores"][0] == pytest.approx(top.values.tolist(), abs=1e-6)


def test_output_fields_match_the_model(mobilenet_weights):
    cfg = TaskConfig(weights_path=mobilenet_weights)
    fields = {f.name: f for f in task_output_fields([cfg])}
    assert fields["embedding"].type == pa.list_(pa.float32()) and fields["embedding"].metadata[b"dim"] == b"1280"
    assert frame_spec_for([cfg]).crop == 224


@pytest.mark.parametrize("model", ["resnet18", "efficientnet_b0"])
def test_other_torchvision_classifiers_build_with_random_weights(model):
    cfg = TaskConfig(model=model, weights=None, top_k=3)
    task = get_task("classify")(cfg, torch.device("cpu"))
    out = task.predict(torch.zeros((2, 224, 224, 3), dtype=torch.uint8), [2], batch_size=2)
    dim = int({f.name: f for f in task_output_fields([cfg])}["embedding"].metadata[b"dim"])
    assert out["embedding"][0].shape == (dim,) and len(out["labels"][0]) == 3
    assert out["labels"][0][0].startswith("class_")


def test_unknown_weights_name_is_explained():
    with pytest.raises(ValueError, match="has no weights 'IMAGENET9K'"):
        get_task("classify").frame_spec(TaskConfig(weights="IMAGENET9K"))


def test_checkpoint_from_fsspec_url(mobilenet_weights, tmp_path):
    """weights_path is any fsspec URL; a memory:// copy loads the same parameters."""
    import fsspec

    with open(mobilenet_weights, "rb") as src, fsspec.open("memory://ckpt/mnv2.pth", "wb") as dst:
        dst.write(src.read())
    cfg = TaskConfig(weights_path="memory://ckpt/mnv2.pth")
    task = get_task("classify")(cfg, torch.device("cpu"))
    out = task.predict(chelsea_frames(cfg), [1], batch_size=1)
    assert out["labels"][0][0] in CATS
