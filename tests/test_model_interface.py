"""timm >= 1.0's model interface on every family, tested as timm's own tests/test_models.py does.

Representative models stand for each family and option (stems, shortcut A, LRN, 1x1 convs, batch norm,
grouped and dilated bottlenecks, the ImageNet VGG head with small convolutions); cheap checks run on every
registered model on the meta device.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import warnings
from collections.abc import Callable

import pytest
import torch
import torch.nn as nn

import zoo
from zoo.errors import ArgumentValueError
from zoo.models import VGG, CifarResNet, MnistCNN, MnistDeepCNN, PretrainedCfg, ResNet
from zoo.models.cfg import PREPROCESSING, fit_channels
from zoo.models.resnet import BasicBlock, Bottleneck

# name -> (builder, a small input size that the model takes)
CASES: dict[str, tuple[Callable[..., nn.Module], int]] = {
    "mnist_cnn": (lambda **kw: zoo.create_model("mnist_cnn", **kw), 28),
    "mnist_cnn_deep": (lambda **kw: zoo.create_model("mnist_cnn_deep", **kw), 28),
    "resnet20": (lambda **kw: zoo.create_model("resnet20", **kw), 16),
    "resnet18": (lambda **kw: zoo.create_model("resnet18", **kw), 32),
    # Grouped, dilated bottlenecks on the CIFAR stem, small enough to be quick.
    "resnext_dilated_cifar": (lambda **kw: ResNet(Bottleneck, [1, 1, 1, 1], stem="cifar", groups=4, width_per_group=8,
                                                  replace_stride_with_dilation=[False, False, True], **kw), 8),
    # The CIFAR head's pools round up, so 16x16 inputs end in the 1x1 map its 512-wide layer takes.
    "vgg11_lrn_cifar": (lambda **kw: zoo.create_model("vgg11_lrn", stem="cifar", **kw), 16),
    # A narrow CIFAR-head VGG with batch norm and config C's 1x1 convolution, also for the tests that train.
    "vgg_bn_cifar_narrow": (lambda **kw: VGG([16, "M", 32, (32, 1), "M", 64, "M"], batch_norm=True, stem="cifar",
                                             **kw), 16),
    # The ImageNet head (7x7 pool, 25088-style flatten, two 4096 layers) on narrow convolutions.
    "vgg_imagenet_head": (lambda **kw: VGG([16, "M", 16, "M", 32, "M", 32, "LRN", "M", 32, "M"], batch_norm=True, **kw),
                          64),
}  # fmt: skip
GRID_HEADS = {"mnist_cnn", "mnist_cnn_deep", "vgg11_lrn_cifar", "vgg_bn_cifar_narrow", "vgg_imagenet_head"}
COMPILE_CASES = ["mnist_cnn_deep", "resnet20", "vgg_imagenet_head"]


def _build(case: str, seed: int = 0, **kwargs) -> nn.Module:
    torch.manual_seed(seed)
    return CASES[case][0](**kwargs)


def _input(case: str, model: nn.Module, batch: int = 2) -> torch.Tensor:
    size = CASES[case][1]
    return torch.randn(batch, model.in_chans, size, size, generator=torch.Generator().manual_seed(3))


# ---- pretrained_cfg and the head, timm's test_model_default_cfgs --------------------------------------------


@pytest.mark.parametrize("case", CASES)
def test_default_cfg_contract(case):
    model = _build(case).eval()
    cfg = model.default_cfg
    assert cfg is model.pretrained_cfg and isinstance(cfg, dict)
    state = model.state_dict()
    assert cfg["first_conv"] + ".weight" in state and cfg["classifier"] + ".weight" in state
    x = torch.randn(1, *cfg["input_size"])
    with torch.no_grad():
        feats = model.forward_features(x)
        pre = model.forward_head(feats, pre_logits=True)
        assert feats.shape[1] == model.num_features and tuple(feats.shape[-2:]) == cfg["pool_size"]
        assert pre.shape == (1, model.head_hidden_size)

        model.reset_classifier(0)
        assert model.num_classes == 0 and isinstance(model.get_classifier(), nn.Identity)
        torch.testing.assert_close(model(x), pre, rtol=0, atol=0)

        model.reset_classifier(0, "")
        if case in GRID_HEADS and cfg["pool_size"] == (model.head_grid,) * 2:
            # No pooling: the map is flattened as it is; at the default size it already has the head's grid.
            torch.testing.assert_close(model(x), pre, rtol=0, atol=0)
        elif case in GRID_HEADS:
            with pytest.raises(RuntimeError):
                model(x)  # a 3-pool VGG leaves 4x4 maps where its CIFAR head was sized for 1x1
        else:
            torch.testing.assert_close(model(x), feats, rtol=0, atol=0)
            with torch.device("meta"):
                unpooled = _build(case, num_classes=0, global_pool="").eval()
                assert unpooled(x.to("meta")).shape == feats.shape


# resnet1202 is resnet20's code 60 times deeper: seconds even on the meta device, and nothing new.
@pytest.mark.parametrize("name", zoo.list_models(exclude_filters="resnet1202"))
def test_every_registered_model_has_its_cfg_and_traces(name):
    with torch.device("meta"):  # shapes only: cheap for all of them
        model = zoo.create_model(name).eval()
        cfg = model.pretrained_cfg
        x = torch.empty(1, *cfg["input_size"])
        feats = model.forward_features(x)
        out = model(x)
        assert torch.fx.symbolic_trace(model)(x).shape == out.shape == (1, model.num_classes)
    assert cfg["architecture"] == name and model.default_cfg is cfg
    assert cfg["fixed_input_size"] is name.startswith("mnist_cnn")
    assert feats.shape[1:] == (model.num_features, *cfg["pool_size"])
    assert feats.shape[1] == model.feature_info[-1]["num_chs"]
    assert PretrainedCfg.from_dict(json.loads(json.dumps(cfg))) == PretrainedCfg(**cfg)


def test_directly_built_models_know_their_architecture():
    with torch.device("meta"):
        cases = {
            "resnet50": ResNet(Bottleneck, [3, 4, 6, 3]),
            "resnext50_32x4d": ResNet(Bottleneck, [3, 4, 6, 3], groups=32, width_per_group=4, stem="cifar"),
            "wide_resnet101_2": ResNet(Bottleneck, [3, 4, 23, 3], width_per_group=128),
            None: ResNet(BasicBlock, [1, 1, 1, 1]),
            "resnet20": CifarResNet(depth=20),
            "cifar_resnet50": CifarResNet(depth=50),
            "vgg16_bn": VGG("D", batch_norm=True),
            "vgg11_lrn": VGG("A-LRN", stem="cifar"),
            "mnist_cnn": MnistCNN(),
            "mnist_cnn_deep": MnistDeepCNN(in_chans=3),
        }
    for arch, model in cases.items():
        assert model.pretrained_cfg["architecture"] == arch, arch
    # The family tables hold the defaults: the stem picks the preprocessing (the default weights' where they fit
    # the stem: resnet50's resize 232, crop 224), in_chans the channel count.
    assert cases["resnext50_32x4d"].pretrained_cfg["input_size"] == (3, 32, 32)
    assert cases["resnext50_32x4d"].pretrained_cfg["mean"] == (0.4914, 0.4822, 0.4465)
    assert cases["resnet50"].pretrained_cfg["crop_pct"] == 224 / 232
    assert cases["mnist_cnn_deep"].pretrained_cfg["mean"] == (0.1307,) * 3
    assert cases["vgg16_bn"].pretrained_cfg["classifier"] == "classifier.6"
    assert cases["vgg11_lrn"].pretrained_cfg["classifier"] == "classifier.3"


@pytest.mark.parametrize(
    "arch", [pytest.param(a, marks=pytest.mark.slow) if a == "resnet1202" else a for a in zoo.list_models()]
)
def test_a_bare_model_preprocesses_as_its_default_weights(arch, monkeypatch):
    """The family tables hold the manifest's default weights' preprocessing (tools/gen_default_cfgs.py writes them),
    fitted to the model's channels, unless the weights were trained with another stem."""
    from zoo.pretrained import manifest

    monkeypatch.delenv("ZOO_WEIGHTS_DIR", raising=False)  # the repository's manifest
    with torch.device("meta"):
        model = zoo.model_entrypoint(arch)()  # the builder alone: the family's table
        created = zoo.create_model(arch)
    cfg, stem = model.pretrained_cfg, getattr(model, "stem", None)
    tag = manifest.default_tag(arch)
    entry = manifest.get_entry(arch, tag) if tag else None
    applies = entry is not None and (entry.model_args or {}).get("stem", stem) == stem
    info = {k: v for k, v in entry.preprocessing().items() if k in PREPROCESSING and v} if applies else {}
    template = type(model).stem_cfgs.get(stem)
    expected = {k: info.get(k, getattr(template, k, cfg[k])) for k in PREPROCESSING}
    expected["input_size"] = (model.in_chans, *expected["input_size"][1:])
    for key in ("mean", "std"):
        expected[key] = fit_channels(tuple(expected[key]), model.in_chans)
    assert {k: cfg[k] for k in PREPROCESSING} == expected
    assert {k: created.pretrained_cfg[k] for k in PREPROCESSING} == expected


@pytest.mark.slow
def test_a_bare_model_opens_no_file_and_imports_no_weights_module():
    code = (
        "import sys, zoo; opened = []; sys.addaudithook(lambda e, a: e == 'open' and opened.append(a[0]));"
        "zoo.create_model('resnet50'); print(opened, sorted(m for m in sys.modules if 'pretrained' in m))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["[]", "[]"]


# ---- global_pool ------------------------------------------------------------------------------------------


def test_global_pool_types_on_a_torchvision_resnet():
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    reference = torchvision.models.resnet18(num_classes=10).eval()
    model = zoo.create_model("resnet18", num_classes=10, global_pool="max").eval()
    assert list(model.state_dict()) == list(reference.state_dict())
    assert model.global_pool == "max" and isinstance(model.avgpool, nn.AdaptiveMaxPool2d)
    model.load_state_dict(reference.state_dict())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        fmap = model.forward_features(x)
        reference.avgpool = nn.AdaptiveMaxPool2d(1)  # torchvision's own model, max-pooled
        torch.testing.assert_close(model(x), reference(x), rtol=0, atol=0)
        for pool, pooled in (("avg", fmap.mean((2, 3))), ("avgmax", 0.5 * (fmap.mean((2, 3)) + fmap.amax((2, 3))))):
            model.reset_classifier(10, pool)
            model.fc.load_state_dict(reference.fc.state_dict())
            assert model.global_pool == pool and list(model.state_dict()) == list(reference.state_dict())
            torch.testing.assert_close(model(x), reference.fc(pooled))


def test_global_pool_on_the_vgg_imagenet_head_keeps_torchvision_layout():
    model = _build("vgg_imagenet_head", global_pool="max").eval()
    keys = list(_build("vgg_imagenet_head").state_dict())
    assert list(model.state_dict()) == keys and isinstance(model.avgpool, nn.AdaptiveMaxPool2d)
    assert model.avgpool.output_size == (7, 7)
    x = _input("vgg_imagenet_head", model)
    with torch.no_grad():
        expected = model.classifier(torch.flatten(nn.functional.adaptive_max_pool2d(model.features(x), 7), 1))
        torch.testing.assert_close(model(x), expected, rtol=0, atol=0)


def test_bad_global_pool():
    model = zoo.create_model("resnet20")
    for build in (
        lambda: zoo.create_model("resnet20", global_pool="sum"),
        lambda: zoo.create_model("resnet20", global_pool=""),  # a feature map, for a 10-class Linear
        lambda: model.reset_classifier(5, ""),
    ):
        with pytest.raises(ArgumentValueError) as e:
            build()
        assert e.value.name == "global_pool"
    assert model.global_pool == "avg" and model.fc.out_features == 10  # unchanged by the refused call


# ---- feature maps -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES)
def test_forward_intermediates(case):
    model = _build(case).eval()
    x = _input(case, model)
    info = model.feature_info
    with torch.no_grad():
        final, maps = model.forward_intermediates(x)
        torch.testing.assert_close(final, model.forward_features(x), rtol=0, atol=0)
        assert len(maps) == len(info) >= 2
        for f, m in zip(info, maps, strict=True):
            assert m.shape[1] == f["num_chs"] and m.shape[-1] <= math.ceil(x.shape[-1] / f["reduction"]) + 1
            assert model.get_submodule(f["module"]) is not None
        last_two = model.forward_intermediates(x, indices=2, intermediates_only=True)
        assert [t.shape for t in last_two] == [t.shape for t in maps[-2:]]
        early, picked = model.forward_intermediates(x, indices=[0, -2], stop_early=True)
        torch.testing.assert_close(early, maps[-2], rtol=0, atol=0)
        torch.testing.assert_close(picked[0], maps[0], rtol=0, atol=0)
    for bad in ({"indices": [len(info)]}, {"output_fmt": "NHWC"}):
        with pytest.raises(ArgumentValueError) as e:
            model.forward_intermediates(x, **bad)
        assert (e.value.name, e.value.value) == next(iter(bad.items()))


def test_feature_info_reads_as_timm_reads_it():
    timm_models = pytest.importorskip("timm.models")
    model = zoo.create_model("resnet50", stem="cifar", replace_stride_with_dilation=[False, False, True])
    info = timm_models.FeatureInfo(model.feature_info, len(model.feature_info))
    assert info.channels() == [64, 256, 512, 1024, 2048] and info.reduction() == [1, 1, 2, 4, 4]
    assert info.module_name() == ["relu", "layer1", "layer2", "layer3", "layer4"]


@pytest.mark.parametrize("name,out_indices", [("resnet18", (1, 2, 3)), ("vgg11_bn", (2, -1)), ("mnist_cnn", None)])
def test_features_only_returns_the_stage_maps_without_the_head(name, out_indices):
    kwargs = {"stem": "cifar"} if name == "vgg11_bn" else {}
    torch.manual_seed(0)
    full = zoo.create_model(name, **kwargs).eval()
    torch.manual_seed(0)
    backbone = zoo.create_model(name, features_only=True, out_indices=out_indices, **kwargs).eval()
    taken = list(out_indices or range(len(full.feature_info)))
    taken = [i % len(full.feature_info) for i in taken]
    assert backbone.feature_info.channels() == [full.feature_info[i]["num_chs"] for i in taken]
    assert backbone.feature_info.reduction() == [full.feature_info[i]["reduction"] for i in taken]
    size = 28 if name == "mnist_cnn" else 16
    x = torch.randn(2, full.in_chans, size, size)
    with torch.no_grad():
        maps = backbone(x)
        expected = full.forward_intermediates(x, indices=taken, intermediates_only=True)
    assert len(maps) == len(taken)
    for got, want in zip(maps, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    kept = {k.removeprefix("model.") for k in backbone.state_dict()}
    assert kept < set(full.state_dict()) and not any(k.startswith(("fc", "classifier")) for k in kept)
    assert backbone.pretrained_cfg["architecture"] == name
    assert backbone.model.num_features == backbone.feature_info.channels()[-1]  # the trunk now ends there
    with pytest.raises(ArgumentValueError) as e:
        zoo.create_model(name, out_indices=(1,))
    assert "out_indices" in str(e.value)


def test_features_only_keeps_the_pretrained_weights():
    # The weights load into the whole model before the head and later stages are pruned.
    full = zoo.create_model("resnet20.fashion_mnist", pretrained=True).eval()
    backbone = zoo.create_model("resnet20.fashion_mnist", pretrained=True, features_only=True, out_indices=(1, 2))
    x = torch.randn(2, full.in_chans, 28, 28)
    with torch.no_grad():
        expected = full.forward_intermediates(x, indices=[1, 2], intermediates_only=True)
        for got, want in zip(backbone.eval()(x), expected, strict=True):
            torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert backbone.pretrained_cfg["tag"] == "fashion_mnist" and not list(backbone.model.layer3.parameters())


def test_resnet_feature_maps_are_torchvision_layer_outputs():
    torchvision = pytest.importorskip("torchvision")
    from torchvision.models.feature_extraction import create_feature_extractor

    torch.manual_seed(0)
    reference = torchvision.models.resnet18().eval()
    ours = zoo.create_model("resnet18").eval()
    ours.load_state_dict(reference.state_dict())
    nodes = {"relu": "0", "layer1": "1", "layer2": "2", "layer3": "3", "layer4": "4"}
    tv_maps = create_feature_extractor(reference, return_nodes=nodes)
    backbone = zoo.models.FeatureGetterNet(ours, out_indices=None)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = tv_maps(x)
        for i, got in enumerate(backbone(x)):
            torch.testing.assert_close(got, expected[str(i)], rtol=0, atol=0)


# ---- training hooks ---------------------------------------------------------------------------------------


def _saved_tensors(model: nn.Module, x: torch.Tensor) -> tuple[int, dict[str, torch.Tensor]]:
    """Run forward and backward; count the tensors autograd kept from the forward pass outside checkpoints."""
    count = 0

    def pack(t):
        nonlocal count
        count += 1
        return t

    torch.manual_seed(5)  # the same dropout masks in both runs
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = model(x).square().mean()
    loss.backward()
    return count, {n: p.grad for n, p in model.named_parameters()}


@pytest.mark.parametrize("case", ["mnist_cnn_deep", "resnet20", "resnext_dilated_cifar", "vgg_bn_cifar_narrow"])
def test_grad_checkpointing_recomputes_and_gives_the_same_gradients(case):
    plain = _build(case).train()
    checkpointed = _build(case).train()
    checkpointed.set_grad_checkpointing()
    x = _input(case, plain, batch=4)
    saved_plain, grads_plain = _saved_tensors(plain, x)
    saved_ckpt, grads_ckpt = _saved_tensors(checkpointed, x)
    assert saved_ckpt < saved_plain / 2
    for name, grad in grads_plain.items():
        torch.testing.assert_close(grads_ckpt[name], grad, rtol=1e-4, atol=1e-6, msg=name)
    with torch.no_grad():
        torch.manual_seed(0)
        final, _ = checkpointed.forward_intermediates(x)
        torch.testing.assert_close(final, plain.forward_features(x), rtol=1e-5, atol=1e-6)
    checkpointed.set_grad_checkpointing(False)
    assert checkpointed.grad_checkpointing is False


@pytest.mark.parametrize("case", ["mnist_cnn_deep", "resnet20", "resnext_dilated_cifar", "vgg11_lrn_cifar"])
def test_group_matcher_and_no_weight_decay_drive_timm_optimizers(case):
    timm_optim = pytest.importorskip("timm.optim")
    model = _build(case)
    assert model.no_weight_decay() == set()
    opt = timm_optim.create_optimizer_v2(model, "sgd", lr=0.1, weight_decay=1e-4, layer_decay=0.5)
    grouped = [id(p) for g in opt.param_groups for p in g["params"]]
    assert sorted(grouped) == sorted(id(p) for p in model.parameters())  # every parameter exactly once
    scales = sorted({g["lr_scale"] for g in opt.param_groups})
    assert len(scales) >= 3 and scales[-1] == 1.0  # stem, blocks ... head, each with its own rate
    stem_scale = next(g["lr_scale"] for g in opt.param_groups for p in g["params"] if p is model.get_parameter(
        model.pretrained_cfg["first_conv"] + ".weight"))  # fmt: skip
    assert stem_scale == scales[0]
    no_decay = [p for g in opt.param_groups if g["weight_decay"] == 0 for p in g["params"]]
    assert no_decay and all(p.ndim <= 1 for p in no_decay)
    coarse = model.group_matcher(coarse=True)
    assert set(coarse) == {"stem", "blocks"}


# ---- scripting, tracing, export and compile ---------------------------------------------------------------


@pytest.mark.parametrize("case", CASES)
def test_script_fx_and_export_equal_eager(case):
    model = _build(case).eval()
    x = _input(case, model)
    with torch.no_grad():
        expected = model(x)
        traced = torch.fx.symbolic_trace(model)
        torch.testing.assert_close(traced(x), expected, rtol=0, atol=0)
        exported = torch.export.export(model, (x,)).module()
        torch.testing.assert_close(exported(x), expected, rtol=0, atol=0)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*deprecated", category=FutureWarning)
            scripted = torch.jit.script(model)
        torch.testing.assert_close(scripted(x), expected, rtol=0, atol=0)
        torch.testing.assert_close(scripted.forward_head(scripted.forward_features(x), True), model.forward_head(
            model.forward_features(x), pre_logits=True), rtol=0, atol=0)  # fmt: skip


@pytest.mark.parametrize("case", COMPILE_CASES)
def test_torch_compile_equals_eager(case):
    # aot_eager runs Dynamo's graph capture and AOTAutograd, where model code breaks; inductor's CPU code
    # generation adds ~20 s of C++ compilation per model and tests torch rather than zoo.
    torch._dynamo.reset()
    model = _build(case).eval()
    x = _input(case, model)
    with torch.no_grad():
        expected = model(x)
        compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
        torch.testing.assert_close(compiled(x), expected, rtol=1e-6, atol=1e-6)


def test_features_only_backbone_traces_and_exports():
    backbone = zoo.create_model("resnet18", stem="cifar", features_only=True, out_indices=(2, 3, 4)).eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        expected = backbone(x)
        for got in (torch.fx.symbolic_trace(backbone)(x), torch.export.export(backbone, (x,)).module()(x)):
            assert len(got) == 3
            for g, e in zip(got, expected, strict=True):
                torch.testing.assert_close(g, e, rtol=0, atol=0)


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_drop_path_and_drop_block_are_timms(arch):
    """timm's stochastic depth and DropBlock at timm's places: the same outputs in train mode, same weights and seed."""
    import timm

    theirs = timm.create_model(arch, drop_path_rate=0.2, drop_block_rate=0.1).train()
    with torch.no_grad():  # timm zero-inits each block's last norm, which would hide what the branches drop
        for module in theirs.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
    ours = zoo.create_model(arch, drop_path_rate=0.2, drop_block_rate=0.1, scriptable=True, no_jit=True).train()
    assert ours.state_dict().keys() == zoo.create_model(arch).state_dict().keys()  # torchvision's layout stays
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(4, 3, 64, 64)
    torch.manual_seed(3)
    expected = theirs(x)
    torch.manual_seed(3)
    got = ours(x)
    torch.manual_seed(4)
    assert not torch.equal(ours(x), got)  # the regularisers are active: another seed drops other paths
    assert torch.equal(got, expected)
    plain = zoo.create_model(arch).eval()
    plain.load_state_dict(ours.state_dict())
    assert torch.equal(ours.eval()(x), plain(x))  # off in eval mode
    with pytest.raises(ArgumentValueError) as e:
        zoo.create_model(arch, drop_path_rate=1.5)
    assert (e.value.name, e.value.value) == ("drop_path_rate", 1.5)


@pytest.mark.parametrize("overlay", [{"num_classes": 100}, {"input_size": (1, 64, 64)}])
def test_pretrained_cfg_overlay_drives_the_build_as_in_timm(overlay):
    import timm

    theirs = timm.create_model("resnet18", pretrained_cfg_overlay=overlay)
    ours = zoo.create_model("resnet18", pretrained_cfg_overlay=overlay)
    assert (ours.num_classes, ours.conv1.in_channels) == (theirs.num_classes, theirs.conv1.in_channels)
    assert ours.pretrained_cfg["num_classes"] == theirs.pretrained_cfg["num_classes"] == ours.num_classes


def test_pretrained_cfg_overlay_file_is_where_the_weights_come_from(tmp_path):
    source = zoo.create_model("mnist_cnn.mnist", pretrained=True)
    zoo.save_weights(source, tmp_path / "mine.safetensors")
    model = zoo.create_model(
        "mnist_cnn", pretrained=True, pretrained_cfg_overlay={"file": str(tmp_path / "mine.safetensors")}
    )
    assert all(torch.equal(model.state_dict()[k], v) for k, v in source.state_dict().items())
