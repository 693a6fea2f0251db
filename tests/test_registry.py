"""The registry, listing, torch.hub entry points, the CLI's list/info and the weight of `import zoo`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

import zoo
from zoo import registry
from zoo.errors import ArgumentValueError

ROOT = Path(__file__).resolve().parent.parent

EXPECTED_ARCHS = {
    "mnist_cnn", "mnist_cnn_deep",
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
    "resnext50_32x4d", "resnext101_32x8d", "resnext101_64x4d", "wide_resnet50_2", "wide_resnet101_2",
    "resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "resnet1202",
    "vgg11", "vgg11_lrn", "vgg13", "vgg16c", "vgg16", "vgg19",
    "vgg11_bn", "vgg13_bn", "vgg16c_bn", "vgg16_bn", "vgg19_bn",
}  # fmt: skip


def test_every_promised_architecture_is_registered():
    assert set(zoo.list_models()) == EXPECTED_ARCHS


def test_list_filters_sort_naturally():
    assert zoo.list_models("resnet*")[:4] == ["resnet18", "resnet20", "resnet32", "resnet34"]
    assert zoo.list_models("resnet*")[-1] == "resnet1202"
    assert zoo.list_models("vgg*", exclude_filters=["*_bn", "*_lrn"]) == [
        "vgg11", "vgg13", "vgg16", "vgg16c", "vgg19",
    ]  # fmt: skip
    assert zoo.list_models(["mnist*", "vgg19*"]) == ["mnist_cnn", "mnist_cnn_deep", "vgg19", "vgg19_bn"]
    assert zoo.list_models("vgg*", exclude_filters="*_bn") == zoo.list_models("vgg*", exclude_filters=["*_bn"])
    assert zoo.list_models("nothing*") == []


def test_names_with_tags():
    assert zoo.is_model("resnet50") and zoo.is_model("resnet50.tv2_in1k")
    assert not zoo.is_model("resnet51")
    assert zoo.split_model_name_tag("resnet50.tv2_in1k") == ("resnet50", "tv2_in1k")
    assert zoo.model_entrypoint("resnet50.anything") is zoo.model_entrypoint("resnet50")
    with pytest.raises(ArgumentValueError) as e:
        zoo.model_entrypoint("vgg61")
    assert "vgg16" in str(e.value)  # a close name


def test_register_model_rejects_duplicates_and_dots():
    def resnet50():
        """A second resnet50."""

    with pytest.raises(ArgumentValueError) as e:
        zoo.register_model(resnet50)
    assert "resnet50" in str(e.value)
    assert zoo.model_entrypoint("resnet50") is not resnet50

    def _fn():
        pass

    _fn.__name__ = "my.model"
    with pytest.raises(ArgumentValueError) as e:
        zoo.register_model(_fn)
    assert "my.model" in str(e.value)


def test_register_a_user_model_and_create_it():
    def tiny_test_net(num_classes: int = 2, **kwargs):
        """A user's model."""
        return torch.nn.Linear(4, num_classes)

    try:
        zoo.register_model(tiny_test_net)
        assert "tiny_test_net" in zoo.list_models("tiny*")
        assert zoo.create_model("tiny_test_net", num_classes=3).out_features == 3
    finally:
        registry._entrypoints.pop("tiny_test_net", None)


# ---- torch.hub ---------------------------------------------------------------------------------------------


def test_torch_hub_load_local_passes_kwargs():
    model = torch.hub.load(str(ROOT), "resnet18", source="local", num_classes=10, stem="cifar")
    assert isinstance(model, zoo.models.ResNet) and model.num_classes == 10 and model.stem == "cifar"
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 10)
    with pytest.raises(ArgumentValueError) as e:
        torch.hub.load(str(ROOT), "resnet18", source="local", stem="tiny")
    assert (e.value.name, e.value.value) == ("stem", "tiny")


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """A torch.hub cache that already holds this checkout as 'zoo-org/zoo:main', as after a download."""
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path))
    (tmp_path / "zoo-org_zoo_main").symlink_to(ROOT, target_is_directory=True)
    return "zoo-org/zoo:main"


def test_torch_hub_list_and_help(hub_cache):
    entries = torch.hub.list(hub_cache, trust_repo=True, verbose=False)
    assert sorted(entries) == sorted(zoo.list_models())
    text = torch.hub.help(hub_cache, "resnet56", trust_repo=True)
    assert "CIFAR ResNet-56" in text and "pretrained" in text
    model = torch.hub.load(hub_cache, "mnist_cnn", trust_repo=True, verbose=False)
    assert model(torch.zeros(1, 1, 28, 28)).shape == (1, 10)


@pytest.mark.slow
def test_hubconf_has_no_side_effects_beyond_its_entries():
    code = (
        "import sys, runpy; before = set(sys.modules);"
        f"ns = runpy.run_path({str(ROOT / 'hubconf.py')!r});"
        "heavy = {'torchvision', 'timm', 'huggingface_hub'} & set(sys.modules);"
        "public = sorted(k for k, v in ns.items() if callable(v) and not k.startswith('_'));"
        "print(sorted(heavy)); print(ns['dependencies']); print(len(public))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    heavy, deps, count = out.stdout.strip().splitlines()
    assert heavy == "[]"
    assert "torch" in deps
    assert int(count) == len(zoo.list_models())


# ---- import cost -------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_import_zoo_imports_no_heavy_libraries():
    code = (
        "import sys, zoo; m = zoo.create_model('resnet18');"
        "print(sorted({'torchvision', 'timm', 'huggingface_hub', 'matplotlib'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ---- CLI ---------------------------------------------------------------------------------------------------


def test_cli_list(capsys):
    from zoo.cli import main

    assert main(["list", "vgg16*"]) == 0
    assert capsys.readouterr().out.split() == ["vgg16", "vgg16_bn", "vgg16c", "vgg16c_bn"]
    assert main(["list", "vgg*", "--exclude", "*_bn", "--exclude", "*c", "-v"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == ["vgg11", "vgg11_lrn", "vgg13", "vgg16", "vgg19"]
    assert "config A-LRN" in lines[1]
    assert main(["list", "nope*"]) == 1


def test_cli_info_shows_output_size_arithmetic(capsys):
    from zoo.cli import main

    assert main(["info", "mnist_cnn"]) == 0
    out = capsys.readouterr().out
    assert "50,186" in out
    assert "floor((28 - 3 + 2*1) / 1) + 1 = 28" in out
    assert "floor((28 - 2 + 2*0) / 2) + 1 = 14" in out

    assert main(["info", "resnet18", "--stem", "cifar", "--num-classes", "10", "--img-size", "32"]) == 0
    out = capsys.readouterr().out
    assert "3 x 32 x 32" in out
    conv1 = next(line for line in out.splitlines() if line.split()[:1] == ["conv1"])
    assert "64 x 32 x 32" in conv1 and "floor((32 - 3 + 2*1) / 1) + 1 = 32" in conv1

    assert main(["info", "resnet50", "--img-size", "224"]) == 0
    out = capsys.readouterr().out
    assert "floor((224 - 7 + 2*3) / 2) + 1 = 112" in out
    assert "25,557,032" in out


def test_cli_bad_input_exits_with_clear_errors(capsys):
    from zoo.cli import main

    assert main(["info", "resnet5"]) == 2
    assert "resnet50" in capsys.readouterr().err  # a close name
    assert main(["info", "mnist_cnn", "--img-size", "14"]) == 2
    assert "14x14" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["frobnicate"])


@pytest.mark.slow
def test_console_script_runs():
    exe = Path(sys.executable).with_name("zoo")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "zoo"]
    out = subprocess.run([*cmd, "list", "resnet1*"], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["resnet18", "resnet101", "resnet110", "resnet152", "resnet1202"]


@pytest.mark.slow
def test_submodules_are_reachable_as_attributes():
    # `zoo.training.fit(...)` as the docs show, without an explicit `import zoo.train`.
    code = (
        "import zoo; print(zoo.training.fit.__name__, zoo.evaluation.evaluate.__name__, zoo.create_transform.__name__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["fit", "evaluate", "create_transform"]
    with pytest.raises(AttributeError, match="nonexistent"):
        zoo.nonexistent  # noqa: B018
