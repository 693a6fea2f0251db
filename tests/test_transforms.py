"""create_transform: the eval preprocessing of zoo's weights equals torchvision's Weights.transforms()."""

from __future__ import annotations

import io
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

import zoo
import zoo.pretrained.load
from zoo.data.transforms import create_transform, resize_size
from zoo.errors import ArgumentValueError


@pytest.fixture(autouse=True)
def _repo_manifest(monkeypatch):
    monkeypatch.delenv("ZOO_WEIGHTS_DIR", raising=False)


def _photo() -> Image.Image:
    """A real photograph (matplotlib ships one), 512 x 600."""
    import matplotlib

    path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    if not path.is_file():
        pytest.skip(f"{path} is not installed")
    return Image.open(path).convert("RGB")


def _synthetic() -> Image.Image:
    """A wide photo-like image: gradients, shapes and noise, through a JPEG round trip."""
    rng = np.random.default_rng(0)
    h, w = 375, 500
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([xx * 255 / w, yy * 255 / h, (xx + yy) % 256], axis=-1)
    img[100:250, 150:300] = (200, 40, 60)
    img = np.clip(img + rng.normal(0, 12, img.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=90)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


@lru_cache
def _cfg(name: str) -> dict:
    """The pretrained_cfg a tag gives (no download; built on the meta device, as only the config matters)."""
    with zoo.pretrained.load.empty_init():
        return zoo.create_model(name).pretrained_cfg


CASES = [
    ("resnet50.tv_in1k", "ResNet50_Weights", "IMAGENET1K_V1"),
    ("resnet50.tv2_in1k", "ResNet50_Weights", "IMAGENET1K_V2"),
    ("resnet152.tv2_in1k", "ResNet152_Weights", "IMAGENET1K_V2"),
    ("vgg16_bn.tv_in1k", "VGG16_BN_Weights", "IMAGENET1K_V1"),
]


@pytest.mark.parametrize("image", [_photo, _synthetic], ids=["photo", "synthetic"])
@pytest.mark.parametrize(("name", "enum", "member"), CASES)
def test_eval_transform_equals_torchvisions(name, enum, member, image):
    cfg = _cfg(name)
    ours = create_transform(cfg)
    theirs = getattr(torchvision.models, enum)[member].transforms()
    img = image()
    a, b = ours(img), theirs(img)
    assert a.shape == b.shape == (3, 224, 224)
    assert torch.equal(a, b)
    # The same for a uint8 tensor image.
    t = torchvision.transforms.functional.pil_to_tensor(img)
    torch.testing.assert_close(ours(t), theirs(t), rtol=0, atol=1e-6)


def test_resize_size_round_trips_float_crop_fractions():
    assert resize_size(224, 224 / 232) == 232
    assert resize_size(224, 0.875) == 256
    assert resize_size(28, 1.0) == 28


def test_transform_follows_the_model_it_is_given():
    model = zoo.create_model("mnist_cnn")
    tf = create_transform(model)  # a model works as well as its pretrained_cfg
    out = tf(_synthetic())  # an RGB image becomes one grey channel for a one-channel model
    assert out.shape == (1, 28, 28)
    assert model(out[None]).shape == (1, 10)


def test_training_transform_gives_the_input_size():
    cfg = _cfg("resnet18.tv_in1k")
    tf = create_transform(cfg, training=True)
    torch.manual_seed(0)
    assert tf(_synthetic()).shape == (3, 224, 224)
    names = [type(t).__name__ for t in tf.transforms]
    assert names[1:3] == ["RandomResizedCrop", "RandomHorizontalFlip"]


def test_non_square_input_sizes_resize_both_sides():
    cfg = {**_cfg("resnet18"), "input_size": (3, 200, 300), "crop_pct": 0.8}
    assert create_transform(cfg)(_synthetic()).shape == (3, 200, 300)


@pytest.mark.parametrize(
    ("change", "name", "value"),
    [({"input_size": None}, "input_size", ()), ({"crop_pct": 1.5}, "crop_pct", 1.5),
     ({"interpolation": "lanczos9"}, "interpolation", "lanczos9"), ({"mean": (0.5,)}, "mean", (0.5,))],
)  # fmt: skip
def test_bad_configs_are_clear_errors(change, name, value):
    cfg = {**_cfg("resnet18"), **change}
    with pytest.raises(ArgumentValueError) as e:
        create_transform(cfg)
    assert (e.value.name, e.value.value) == (name, value)  # the field and its value
