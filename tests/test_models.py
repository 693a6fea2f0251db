"""Model families: torchvision-identical layouts, parameter counts, shapes and the shared interface."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
import torch
import torch.nn as nn

import zoo
from zoo.errors import ArgumentValueError
from zoo.models import VGG_CONFIGS, make_cifar_resnet, make_resnet, make_vgg
from zoo.models.resnet import BasicBlock, Bottleneck

TORCHVISION_ARCHS = [
    "vgg11", "vgg13", "vgg16", "vgg19", "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn",
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
    "resnext50_32x4d", "resnext101_32x8d", "resnext101_64x4d", "wide_resnet50_2", "wide_resnet101_2",
]  # fmt: skip


def _shapes(model: nn.Module) -> dict[str, torch.Size]:
    return {k: v.shape for k, v in model.state_dict().items()}


def _modules(model: nn.Module) -> list[tuple[str, str]]:
    """Every submodule's name and class name (the root and block classes are each library's own)."""
    return [(name, type(m).__name__) for name, m in model.named_modules() if name]


def _fill_(model: nn.Module) -> nn.Module:
    """Give every tensor distinct, varied values fast (an RNG takes seconds for VGG's 100M-weight head)."""
    with torch.no_grad():
        for i, (name, t) in enumerate(model.state_dict().items()):
            if t.is_floating_point():
                v = torch.arange(t.numel(), dtype=torch.float32).mul_(0.6180339887).add_(0.37 * i).frac_().sub_(0.5)
                v = v.abs_().add_(0.5) if name.endswith("running_var") else v.mul_(3.0 / max(t[0].numel(), 1) ** 0.5)
                t.copy_(v.view_as(t))
    return model


@pytest.fixture(scope="module")
def torchvision():
    return pytest.importorskip("torchvision")


@pytest.mark.parametrize("name", TORCHVISION_ARCHS)
def test_layout_equals_torchvision(name, torchvision):
    # Keys, shapes and module trees need no initialised tensors: both models stay on the meta device.
    with torch.device("meta"):
        reference = torchvision.models.get_model(name)
        ours = zoo.create_model(name)
    assert list(_shapes(ours)) == list(_shapes(reference)), "state_dict keys (and their order) differ"
    assert _shapes(ours) == _shapes(reference)
    assert _modules(ours) == _modules(reference), "module names or types differ"
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in reference.parameters())


@pytest.mark.parametrize("name", [n for n in TORCHVISION_ARCHS if "res" in n])
def test_resnet_cifar_stem_changes_only_conv1(name):
    with torch.device("meta"):
        imagenet = _shapes(zoo.create_model(name))
        cifar = _shapes(zoo.create_model(name, stem="cifar"))
    assert list(cifar) == list(imagenet)
    assert {k for k in cifar if cifar[k] != imagenet[k]} == {"conv1.weight"}
    assert cifar["conv1.weight"][-2:] == (3, 3)


# One model per block type and head; the options tests below cover grouped, wide and dilated bottlenecks.
@pytest.mark.parametrize("name", ["resnet18", "vgg11_bn"])
def test_outputs_equal_torchvision(name, torchvision):
    with torch.device("meta"):
        reference = torchvision.models.get_model(name)
        ours = zoo.create_model(name)
    reference = _fill_(reference.to_empty(device="cpu")).eval()
    ours.load_state_dict(reference.state_dict(), assign=True)
    ours.eval()
    x = torch.randn(2, 3, 48, 48, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = reference(x)
        torch.testing.assert_close(ours(x), expected, rtol=0, atol=0)
    assert expected.std() > 0


@pytest.mark.parametrize(
    "block,layers,options",
    [
        ("Bottleneck", [1, 1, 1, 1], {"groups": 8, "width_per_group": 4}),  # ResNeXt
        ("Bottleneck", [1, 1, 1, 1], {"width_per_group": 128}),  # wide
        ("Bottleneck", [1, 1, 2, 1], {"replace_stride_with_dilation": [False, True, True], "frozen_bn": True}),
        ("Bottleneck", [1, 2, 1, 1], {"replace_stride_with_dilation": [True, False, True], "groups": 2}),
        ("BasicBlock", [1, 1, 1, 1], {"frozen_bn": True}),
    ],
)
def test_resnet_options_match_torchvision(block, layers, options, torchvision):
    options = dict(options)
    if options.pop("frozen_bn", False):
        options["norm_layer"] = torchvision.ops.FrozenBatchNorm2d
    tv_resnet = torchvision.models.resnet
    with torch.device("meta"):
        reference = tv_resnet.ResNet(getattr(tv_resnet, block), layers, num_classes=10, **options)
        ours = zoo.models.ResNet(getattr(zoo.models.resnet, block), layers, num_classes=10, **options)
    assert list(_shapes(ours)) == list(_shapes(reference)) and _shapes(ours) == _shapes(reference)
    assert _modules(ours) == _modules(reference)
    reference = _fill_(reference.to_empty(device="cpu")).eval()
    ours.load_state_dict(reference.state_dict(), assign=True)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = reference(x)
        torch.testing.assert_close(ours.eval()(x), expected, rtol=0, atol=0)
    assert expected.std() > 0


@pytest.mark.parametrize("name, options", [("resnet50", {"groups": 32, "width_per_group": 4}),
                                           ("resnet101", {"width_per_group": 128})])  # fmt: skip
def test_the_builders_take_torchvisions_groups_and_width_options(name, options, torchvision):
    """README: a zoo builder takes torchvision's options; resnet50(groups=32, width_per_group=4) is ResNeXt-50."""
    with torch.device("meta"):
        ours = zoo.create_model(name, **options)
        reference = getattr(torchvision.models, name)(**options)
    assert _shapes(ours) == _shapes(reference) and _modules(ours) == _modules(reference)


def test_dilation_keeps_the_resolution_and_says_so():
    with torch.device("meta"):
        model = zoo.create_model("resnet50", replace_stride_with_dilation=[False, True, True])
        feats = model.forward_features(torch.empty(1, 3, 224, 224))
    assert feats.shape == (1, 2048, 28, 28)
    assert [f["reduction"] for f in model.feature_info] == [2, 4, 8, 8, 8]
    assert model.pretrained_cfg["pool_size"] == (28, 28)


def test_frozen_batchnorm_backbone_for_detection(torchvision):
    frozen = torchvision.ops.FrozenBatchNorm2d
    with torch.device("meta"):
        ours = zoo.create_model("resnet50", norm_layer=frozen, stem="cifar")
    assert sum(isinstance(m, frozen) for m in ours.modules()) == 53  # 1 stem + 3 per block x 16 + 4 downsample
    assert not any(isinstance(m, nn.BatchNorm2d) for m in ours.modules())
    assert not any("num_batches_tracked" in k for k in ours.state_dict())


def refused(name: str, build: Callable[[], object]) -> ArgumentValueError:
    """The ArgumentValueError ``build()`` raises, which names the argument ``name``."""
    with pytest.raises(ArgumentValueError) as e:
        build()
    assert e.value.name == name
    return e.value


def test_bad_resnet_options():
    refused("groups", lambda: zoo.models.ResNet(BasicBlock, [2, 2, 2, 2], groups=32))  # BasicBlock takes no groups
    dilated = [False, False, True]
    refused("replace_stride_with_dilation", lambda: zoo.create_model("resnet18", replace_stride_with_dilation=dilated))
    e = refused(
        "replace_stride_with_dilation", lambda: zoo.create_model("resnet50", replace_stride_with_dilation=[True])
    )
    assert e.value == [True]
    assert refused("layers", lambda: zoo.models.ResNet(Bottleneck, [3, 4, 6])).value == [3, 4, 6]
    assert refused("groups", lambda: zoo.models.ResNet(Bottleneck, [1, 1, 1, 1], groups=0)).value == 0
    with pytest.raises(TypeError) as e:
        zoo.create_model("resnet50", block=BasicBlock)  # the name fixes the block and depth
    assert "'block'" in str(e.value)


# Parameter counts of the paper's CIFAR networks as He et al. (2015) report them in Table 6, in millions.
PAPER_CIFAR_PARAMS = {"resnet20": 0.27, "resnet32": 0.46, "resnet44": 0.66, "resnet56": 0.85, "resnet110": 1.7,
                      "resnet1202": 19.4}  # fmt: skip
# Simonyan & Zisserman (2014), Table 2, in millions.
PAPER_VGG_PARAMS = {"vgg11": 133, "vgg11_lrn": 133, "vgg13": 133, "vgg16c": 134, "vgg16": 138, "vgg19": 144}


@pytest.mark.parametrize("name", sorted(PAPER_CIFAR_PARAMS))
def test_cifar_resnet_parameter_counts_match_paper(name):
    with torch.device("meta"):
        model = zoo.create_model(name)
    millions = sum(p.numel() for p in model.parameters()) / 1e6
    digits = 1 if PAPER_CIFAR_PARAMS[name] >= 1 else 2
    assert round(millions, digits) == PAPER_CIFAR_PARAMS[name]


@pytest.mark.parametrize("name", sorted(PAPER_VGG_PARAMS))
def test_vgg_parameter_counts_match_paper(name):
    with torch.device("meta"):
        model = zoo.create_model(name)
    assert round(sum(p.numel() for p in model.parameters()) / 1e6) == PAPER_VGG_PARAMS[name]


def test_mnist_cnn_parameter_counts_follow_the_course_layers():
    conv = lambda cin, cout: cin * cout * 9 + cout  # noqa: E731
    assert sum(p.numel() for p in zoo.create_model("mnist_cnn").parameters()) == (
        conv(1, 32) + conv(32, 64) + 3136 * 10 + 10
    )
    deep = zoo.create_model("mnist_cnn_deep")
    assert sum(p.numel() for p in deep.parameters()) == (
        conv(1, 32) + conv(32, 64) + conv(64, 128) + 2048 * 625 + 625 + 625 * 10 + 10
    )


def test_vgg_config_c_has_1x1_convs_ending_stages_3_to_5():
    model = make_vgg("C", stem="cifar", num_classes=10)
    stages: list[list[int]] = [[]]
    for layer in model.features:
        if isinstance(layer, nn.Conv2d):
            stages[-1].append(layer.kernel_size[0])
        elif isinstance(layer, nn.MaxPool2d):
            stages.append([])
    assert stages[:5] == [[3, 3], [3, 3], [3, 3, 1], [3, 3, 1], [3, 3, 1]]


def test_vgg_a_lrn_has_one_lrn_after_the_first_conv():
    model = zoo.create_model("vgg11_lrn", stem="cifar")
    kinds = [type(m).__name__ for m in model.features]
    assert kinds[:4] == ["Conv2d", "ReLU", "LocalResponseNorm", "MaxPool2d"]
    assert kinds.count("LocalResponseNorm") == 1
    assert kinds.count("Conv2d") == 8


def test_every_paper_config_builds_with_its_conv_count():
    expected = {"A": 8, "A-LRN": 8, "B": 10, "C": 13, "D": 13, "E": 16}  # weight layers minus the 3 FC
    assert set(expected) == set(VGG_CONFIGS)
    for letter, n in expected.items():
        model = make_vgg(letter, stem="cifar", num_classes=10)
        assert sum(isinstance(m, nn.Conv2d) for m in model.features) == n


def test_vgg_from_the_seed_course_custom_list():
    cfg = [32, 32, "M", 64, 64, 128, 128, 128, "M", 256, 256, 256, 512, 512, 512, "M"]
    model = make_vgg(cfg, batch_norm=True, stem="cifar", num_classes=10)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert model.num_features == 512 and model.head_hidden_size == 512
    assert model.pretrained_cfg["architecture"] is None  # no registered name describes this list
    assert make_vgg(list(VGG_CONFIGS["D"]), batch_norm=True, stem="cifar").pretrained_cfg["architecture"] == "vgg16_bn"


@pytest.mark.parametrize(
    "name,kwargs",
    [
        ("resnet18", {"stem": "cifar", "num_classes": 10}),
        ("resnet50", {"stem": "cifar", "num_classes": 100}),
        ("vgg16_bn", {"stem": "cifar", "num_classes": 10, "in_chans": 1}),
        ("vgg11", {"stem": "cifar", "num_classes": 10}),
        ("resnet20", {}),
        ("resnet56", {"shortcut": "B", "num_classes": 100}),
    ],
)
def test_cifar_inputs_32x32(name, kwargs):
    model = zoo.create_model(name, **kwargs).eval()
    x = torch.randn(2, kwargs.get("in_chans", 3), 32, 32)
    with torch.no_grad():
        out = model(x)
    assert out.shape == (2, kwargs.get("num_classes", 10))
    assert model.pretrained_cfg["input_size"] == (kwargs.get("in_chans", 3), 32, 32)


def test_cifar_stem_vgg_takes_28x28_mnist_inputs():
    model = zoo.create_model("vgg11_bn", stem="cifar", num_classes=10, in_chans=1).eval()
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "vgg11_bn"])
def test_imagenet_inputs_224x224(name):
    with torch.device("meta"):  # shapes only
        model = zoo.create_model(name).eval()
        feats = model.forward_features(torch.empty(1, 3, 224, 224))
        assert feats.shape[-2:] == (7, 7)
        out = model.forward_head(feats)
    assert out.shape == (1, 1000)


def test_cifar_stem_keeps_resolution_until_layer2():
    model = zoo.create_model("resnet18", stem="cifar", num_classes=10).eval()
    assert model.forward_features(torch.randn(1, 3, 32, 32)).shape == (1, 512, 4, 4)
    assert isinstance(model.maxpool, nn.Identity) and model.conv1.kernel_size == (3, 3)
    assert model.conv1.stride == (1, 1)


def test_bottleneck_strides_on_the_3x3():
    block = zoo.create_model("resnet50").layer2[0]
    assert block.conv1.stride == (1, 1) and block.conv2.stride == (2, 2)


def test_cifar_resnet_shortcuts():
    a = make_cifar_resnet(20)
    b = make_cifar_resnet(20, shortcut="B")
    assert sum(p.numel() for p in b.parameters()) > sum(p.numel() for p in a.parameters())
    # Option A is parameter-free: the only difference from B is the two projection shortcuts.
    projections = sum(p.numel() for n, p in b.named_parameters() if "downsample" in n)
    assert projections == (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64)
    assert sum(p.numel() for p in a.parameters()) + projections == sum(p.numel() for p in b.parameters())
    # Option A subsamples and pads the 32 new channels with zeros, 16 on each side.
    x = torch.randn(1, 32, 16, 16)
    padded = a.layer3[0].downsample(x)
    assert padded.shape == (1, 64, 8, 8) and not list(a.layer3[0].downsample.parameters())
    torch.testing.assert_close(padded[:, 16:48], x[:, :, ::2, ::2], rtol=0, atol=0)
    assert not padded[:, :16].any() and not padded[:, 48:].any()
    assert sum(isinstance(m, nn.Conv2d) for m in make_cifar_resnet(56).modules()) == 1 + 6 * 9


def test_unregistered_cifar_depth_is_named_apart_and_evaluates(tmp_path):
    # Bug: make_cifar_resnet(50) called itself "resnet50", so evaluating its run built ImageNet's ResNet-50.
    from zoo.data import TensorImageDataset
    from zoo.runs import load_model
    from zoo.training import fit, get_recipe

    torch.manual_seed(0)
    model = make_cifar_resnet(50, num_classes=3)
    assert model.pretrained_cfg["architecture"] == "cifar_resnet50"
    assert make_cifar_resnet(56).pretrained_cfg["architecture"] == "resnet56"  # registered depths keep their name
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (12, 3, 8, 8), dtype=torch.uint8, generator=gen)
    data = TensorImageDataset(images, torch.arange(12) % 3, ["a", "b", "c"], (0.5,) * 3, (0.25,) * 3)
    recipe = get_recipe("fast").replace(epochs=1, batch_size=6)
    fit(model, data, data, recipe, tmp_path, device="cpu", progress=False, model_args={"num_classes": 3})
    assert json.loads((tmp_path / "config.json").read_text())["architecture"] == "cifar_resnet50"

    rebuilt = load_model(tmp_path, "cifar_resnet50")
    assert isinstance(rebuilt, zoo.models.CifarResNet) and rebuilt.depth == 50
    with pytest.raises(ValueError) as e:
        load_model(tmp_path, "resnet50")
    assert "cifar_resnet50" in str(e.value)  # the run's own architecture
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.eval()(x), model.eval()(x))
    assert zoo.create_model("cifar_resnet26", shortcut="B").depth == 26
    assert refused("depth", lambda: zoo.create_model("cifar_resnet27")).value == 27


def test_zero_init_residual_makes_blocks_identity():
    model = zoo.create_model("resnet18", zero_init_residual=True)
    assert all(not b.bn2.weight.any() for layer in (model.layer1, model.layer4) for b in layer)
    cifar = zoo.create_model("resnet20", zero_init_residual=True)
    assert not cifar.layer1[0].bn2.weight.any()


def test_drop_rate_is_active_only_in_training():
    model = zoo.create_model("resnet20", drop_rate=0.5)
    feats = torch.randn(4, 64, 8, 8)
    model.eval()
    torch.testing.assert_close(model.forward_head(feats), model.forward_head(feats))
    model.train()
    torch.manual_seed(0)
    assert not torch.equal(model.forward_head(feats), model.forward_head(feats))


INTERFACE_MODELS = ["mnist_cnn", "mnist_cnn_deep", "resnet20", "resnet18", "vgg11_bn"]


@pytest.mark.parametrize("name", INTERFACE_MODELS)
def test_uniform_interface(name):
    kwargs = {"stem": "cifar"} if name in ("resnet18", "vgg11_bn") else {}
    model = zoo.create_model(name, num_classes=7, **kwargs).eval()
    c, h, w = model.pretrained_cfg["input_size"]
    assert c == model.in_chans
    size = h if model.pretrained_cfg["fixed_input_size"] else 16  # small inputs where the model takes them
    x = torch.randn(2, c, size, size)
    with torch.no_grad():
        feats = model.forward_features(x)
        pooled = model.forward_head(feats, pre_logits=True)
        logits = model.forward_head(feats)
    assert feats.shape[1] == model.num_features and pooled.shape == (2, model.head_hidden_size)
    assert logits.shape == (2, 7) and model.num_classes == 7
    torch.testing.assert_close(logits, model(x))

    model.reset_classifier(3)
    assert model(x).shape == (2, 3) and model.num_classes == 3 and model.pretrained_cfg["num_classes"] == 3
    model.reset_classifier(0)
    with torch.no_grad():
        torch.testing.assert_close(model(x), pooled)

    headless = zoo.create_model(name, num_classes=0, **kwargs).eval()
    assert headless(x).shape == (2, headless.head_hidden_size)
    cfg = headless.pretrained_cfg
    assert cfg["architecture"] == name and len(cfg["mean"]) == len(cfg["std"]) == c
    assert {"input_size", "interpolation", "crop_pct", "num_classes", "first_conv", "classifier"} <= set(cfg)
    assert isinstance(headless.get_submodule(cfg["first_conv"]), nn.Conv2d)


@pytest.mark.parametrize("name", ["resnet18", "resnet20", "vgg11", "mnist_cnn"])
def test_in_chans_changes_first_conv_and_normalisation(name):
    kwargs = {"stem": "cifar"} if name in ("resnet18", "vgg11") else {}
    model = zoo.create_model(name, in_chans=5, **kwargs)
    first = model.get_submodule(model.pretrained_cfg["first_conv"])
    assert first.in_channels == 5
    assert len(model.pretrained_cfg["mean"]) == 5 and model.pretrained_cfg["input_size"][0] == 5


# ---- bad input ---------------------------------------------------------------------------------------------


def test_unknown_model_suggests_close_names():
    with pytest.raises(ArgumentValueError) as e:
        zoo.create_model("resnet5")
    assert "'resnet5'" in str(e.value) and "resnet50" in str(e.value)


def test_unknown_vgg_config_letter():
    assert refused("cfg", lambda: make_vgg("F")).value == "F"


@pytest.mark.parametrize("bad, name", [([64, "X"], "cfg[1]"), ([0, "M"], "cfg[0]"), ([(64, 2)], "cfg[0]"), ([], "cfg")])
def test_bad_vgg_config_list(bad, name):
    refused(name, lambda: make_vgg(bad))


def test_invalid_depths():
    assert refused("depth", lambda: make_resnet(42)).value == 42
    assert refused("depth", lambda: make_cifar_resnet(21)).value == 21


@pytest.mark.parametrize("name", ["resnet18", "resnet20", "vgg11", "mnist_cnn"])
def test_bad_num_classes_and_in_chans(name):
    assert refused("num_classes", lambda: zoo.create_model(name, num_classes=-1)).value == -1
    assert refused("in_chans", lambda: zoo.create_model(name, in_chans=0)).value == 0


def test_bad_stem():
    assert refused("stem", lambda: zoo.create_model("resnet18", stem="mnist")).value == "mnist"
    assert refused("stem", lambda: zoo.create_model("resnet20", stem="imagenet")).value == "imagenet"


@pytest.mark.parametrize(
    "name, kwargs, accepted", [("resnet18", {"depth": 50}, "stem"), ("mnist_cnn", {"stem": "cifar"}, "in_chans")]
)
def test_unexpected_kwarg_lists_accepted_ones(name, kwargs, accepted):
    with pytest.raises(TypeError) as e:
        zoo.create_model(name, **kwargs)
    assert repr(*kwargs) in str(e.value) and accepted in str(e.value)  # the refused keyword, those it takes


def test_bad_shortcut_option():
    assert refused("shortcut", lambda: zoo.create_model("resnet20", shortcut="C")).value == "C"
