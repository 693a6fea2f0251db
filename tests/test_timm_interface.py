"""What a timm user writes works on zoo models: a bare architecture's pretrained_cfg, ``img_size``, and
``create_transform`` with timm's own arguments (checked against torchvision's and timm's own transforms)."""

from __future__ import annotations

import numpy as np
import pytest
import timm.data
import torch
import torchvision
from PIL import Image

import zoo
from zoo.errors import ModelArgumentError


@pytest.fixture(autouse=True)
def _repo_manifest(monkeypatch):
    monkeypatch.delenv("ZOO_WEIGHTS_DIR", raising=False)


def _image() -> Image.Image:
    rng = np.random.default_rng(1)
    return Image.fromarray(rng.integers(0, 256, (300, 420, 3), dtype=np.uint8))


# -- a bare architecture's pretrained_cfg is its default weights' preprocessing (as in timm)


@pytest.mark.parametrize(("arch", "enum"), [("resnet50", "ResNet50_Weights"), ("resnet18", "ResNet18_Weights"),
                                            ("wide_resnet50_2", "Wide_ResNet50_2_Weights")])  # fmt: skip
def test_bare_architecture_transform_is_its_default_weights(arch, enum):
    # zoo's default weights are torchvision's DEFAULT, so a model built without weights must preprocess
    # exactly as torchvision's DEFAULT transforms do (resnet50: resize 232, not 256).
    model = zoo.create_model(arch)
    img = _image()
    theirs = getattr(torchvision.models, enum).DEFAULT.transforms()
    assert torch.equal(zoo.create_transform(model)(img), theirs(img))
    assert model.pretrained_cfg["crop_pct"] == zoo.get_weights(arch).preprocessing["crop_pct"]


def test_bare_architecture_names_no_weights():
    cfg = zoo.create_model("resnet50").pretrained_cfg
    assert cfg.get("tag") is None and cfg.get("label_names") is None
    assert not {"file", "sha256", "source", "url", "hf_hub_id"} & set(cfg)


def test_default_preprocessing_follows_channels_and_not_another_stem():
    grey = zoo.create_model("resnet50", in_chans=1).pretrained_cfg
    assert len(grey["mean"]) == len(grey["std"]) == 1 and grey["input_size"][0] == 1
    assert grey["crop_pct"] == zoo.get_weights("resnet50").preprocessing["crop_pct"]
    # resnet50's default weights are ImageNet-stem ones: a CIFAR-stem resnet50 keeps the CIFAR defaults.
    cifar = zoo.create_model("resnet50", stem="cifar").pretrained_cfg
    assert cifar["input_size"] == (3, 32, 32) and cifar["crop_pct"] == 1.0
    # vgg11_bn's default weights are ImageNet ones, its CIFAR-stem weights another tag.
    assert zoo.create_model("vgg11_bn", stem="cifar").pretrained_cfg["input_size"] == (3, 32, 32)


# -- img_size


@pytest.mark.slow
def test_img_size_sets_the_input_size_that_the_model_reports_and_uses():
    model = zoo.create_model("resnet50", img_size=288)
    cfg = model.pretrained_cfg
    assert cfg["input_size"] == (3, 288, 288)
    with torch.no_grad():
        feats = model.eval().forward_features(torch.zeros(1, 3, 288, 288))
    assert tuple(feats.shape[-2:]) == cfg["pool_size"]
    assert zoo.create_transform(model)(_image()).shape == (3, 288, 288)
    rect = zoo.create_model("vgg11", img_size=(160, 224)).pretrained_cfg
    assert rect["input_size"] == (3, 160, 224) and rect["pool_size"] == (5, 7)


def test_img_size_applies_after_the_weights(tmp_path):
    model = zoo.create_model("resnet20.cifar10", pretrained=True, img_size=40)
    assert model.pretrained_cfg["input_size"] == (3, 40, 40)
    assert model.pretrained_cfg["label_names"][0] == "airplane"  # still the weights' own description
    reference = zoo.create_model("resnet20.cifar10", pretrained=True)
    assert torch.equal(model.state_dict()["fc.weight"], reference.state_dict()["fc.weight"])


def test_fixed_size_models_refuse_another_img_size():
    with pytest.raises(ModelArgumentError) as e:
        zoo.create_model("mnist_cnn", img_size=32)
    assert "img_size=32" in str(e.value)
    assert zoo.create_model("mnist_cnn", img_size=28).pretrained_cfg["input_size"] == (1, 28, 28)


@pytest.mark.parametrize("bad", [0, -3, 5000, "224", 2.5, True, (224,), (224, 224, 3)])
def test_bad_img_size_is_a_clear_error(bad):
    with pytest.raises(ModelArgumentError) as e:
        zoo.create_model("resnet18", img_size=bad)
    assert "img_size" in str(e.value)


# -- create_transform with timm's arguments


@pytest.mark.parametrize("training", [False, True])
def test_create_transform_takes_timms_resolved_data_config(training):
    model = zoo.create_model("resnet50")
    config = timm.data.resolve_data_config({}, model=model)
    ours = zoo.create_transform(**config, is_training=training)
    theirs = timm.data.create_transform(**config, is_training=training, color_jitter=None)
    img = _image()
    torch.manual_seed(0)
    a = ours(img)
    torch.manual_seed(0)
    b = theirs(img)
    assert a.shape == b.shape == (3, 224, 224)
    if not training:  # the random crops draw from different generators' call orders; eval is deterministic
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_create_transform_takes_timms_positional_input_size_and_defaults():
    img = _image()
    ours = zoo.create_transform(160, crop_pct=0.9)
    theirs = timm.data.create_transform(160, crop_pct=0.9)
    torch.testing.assert_close(ours(img), theirs(img), rtol=0, atol=1e-6)
    # timm's default crop fraction (0.875) when none is given
    assert zoo.create_transform((3, 224, 224))(img).shape == (3, 224, 224)


def test_timm_only_arguments_give_timms_transform():
    tf = zoo.create_transform(zoo.create_model("resnet18"), is_training=True, auto_augment="rand-m9-mstd0.5",
                              re_prob=0.25)  # fmt: skip
    names = [type(t).__name__ for t in tf.transforms]
    assert "RandAugment" in names and "RandomErasing" in names
    assert tf(_image()).shape == (3, 224, 224)
    squash = zoo.create_transform(zoo.create_model("resnet18"), crop_mode="squash")
    assert squash(_image()).shape == (3, 224, 224)


def test_create_transform_refuses_what_timm_would_not_take():
    model = zoo.create_model("resnet18")
    for args, kwargs, name in (((model,), {"nonsense": 1}, "nonsense"), ((224,), {"input_size": 224}, "input_size")):
        with pytest.raises(TypeError) as e:
            zoo.create_transform(*args, **kwargs)
        assert name in str(e.value)


# -- features_only and forward_intermediates against timm itself, with the same weights


def _vgg_key_for_timm(key: str) -> str:
    # timm's features_only VGG flattens the ``features`` Sequential (features_0.weight); zoo keeps
    # torchvision's module names (features.0.weight).
    return key.replace("features.", "features_", 1)


@pytest.mark.slow
@pytest.mark.parametrize(("arch", "out_indices"), [("resnet18", None), ("resnet50", (1, 2, 3)),
                                                   ("resnext50_32x4d", (2, 4)), ("vgg11_bn", None)])  # fmt: skip
def test_features_only_equals_timms(arch, out_indices):
    torch.manual_seed(0)
    ours = zoo.create_model(arch, features_only=True, out_indices=out_indices).eval()
    theirs = timm.create_model(arch, features_only=True,
                               **({"out_indices": out_indices} if out_indices else {})).eval()  # fmt: skip
    assert ours.feature_info.out_indices == tuple(theirs.feature_info.out_indices)  # default: every stage
    assert ours.feature_info.channels() == theirs.feature_info.channels()
    assert ours.feature_info.reduction() == theirs.feature_info.reduction()
    state = ours.state_dict()
    if arch.startswith("vgg"):
        state = {_vgg_key_for_timm(k): v for k, v in state.items()}
    else:  # the same names as timm's, key for key and in order
        assert list(state) == list(theirs.state_dict())
    theirs.load_state_dict(state)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        got, want = ours(x), theirs(x)
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_a_backbones_weights_go_back_into_the_full_model():
    backbone = zoo.create_model("resnet20.cifar10", pretrained=True, features_only=True)
    full = zoo.create_model("resnet20")
    missing, unexpected = full.load_state_dict(backbone.state_dict(), strict=False)
    assert unexpected == [] and missing == ["fc.weight", "fc.bias"]
    assert backbone.model.layer1[0].conv1 is backbone.layer1[0].conv1  # one set of layers, not two
    backbone.train()
    assert backbone.model.training and backbone.layer1.training


@pytest.mark.slow
@pytest.mark.parametrize(("arch", "indices"), [("resnet50", None), ("resnet18", [1, 3]), ("vgg16_bn", 2)])
def test_forward_intermediates_equals_timms(arch, indices):
    torch.manual_seed(0)
    ours = zoo.create_model(arch).eval()
    theirs = timm.create_model(arch).eval()
    if not hasattr(theirs, "forward_intermediates"):  # timm's VGG has it from 1.0.31 (zoo's floor is older)
        pytest.skip(f"timm {timm.__version__}'s {arch} has no forward_intermediates to compare with")
    state = ours.state_dict()
    if arch.startswith("vgg"):  # timm's VGG head is a ConvMlp; the trunk (features) is torchvision's
        theirs_state = theirs.state_dict()
        state = {k: v for k, v in state.items() if k in theirs_state}
        theirs.load_state_dict(state, strict=False)
    else:
        theirs.load_state_dict(state)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        final, maps = ours.forward_intermediates(x, indices=indices)
        t_final, t_maps = theirs.forward_intermediates(x, indices=indices)
    torch.testing.assert_close(final, t_final, rtol=0, atol=0)
    assert len(maps) == len(t_maps)
    for a, b in zip(maps, t_maps, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
