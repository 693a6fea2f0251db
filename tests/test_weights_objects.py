"""Weights as objects before a build (torchvision's ``get_model_weights``/``weights=``, timm's pretrained cfgs)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

import zoo
from zoo.predict import SAMPLES_DIR
from zoo.pretrained import manifest

ROOT = Path(__file__).resolve().parents[1]


def _raw(name: str) -> dict:
    return json.loads((ROOT / "weights" / "manifest.json").read_text())["weights"][name]


def test_weights_carry_the_manifest_facts():
    w = zoo.get_weights("resnet20.cifar10")
    raw = _raw("resnet20.cifar10")
    assert (w.name, w.arch, w.tag) == ("resnet20.cifar10", "resnet20", "cifar10")
    assert (w.sha256, w.size, w.num_classes, w.dataset) == (raw["sha256"], raw["size"], 10, raw["dataset"])
    assert w.metrics["top1"] == raw["metrics"]["top1"] and w.metrics["command"] == raw["metrics"]["command"]
    assert list(w.preprocessing["mean"]) == raw["mean"] and list(w.preprocessing["input_size"]) == raw["input_size"]
    assert w.label_names == tuple(raw["label_names"]) and w.meta["categories"] == w.label_names
    assert w.license == raw["license"] and "bundled" in w.source
    assert w.is_cached()  # a bundled file is always here


def test_weights_are_immutable():
    w = zoo.get_weights("resnet20.cifar10")
    with pytest.raises(dataclasses.FrozenInstanceError):
        w.sha256 = "0" * 64  # type: ignore[misc]
    with pytest.raises(TypeError):
        w.metrics["top1"] = 100.0  # type: ignore[index]
    assert zoo.get_weights("resnet20.cifar10").metrics["top1"] == _raw("resnet20.cifar10")["metrics"]["top1"]


def test_the_default_weights_and_the_list_of_an_architecture():
    tags = sorted(n.split(".", 1)[1] for n in manifest.weight_names() if n.startswith("resnet20."))
    listed = zoo.list_weights("resnet20")
    assert sorted(w.tag for w in listed) == tags
    default = zoo.get_weights("resnet20")
    assert default.default and listed[0] == default == zoo.get_weights("resnet20.DEFAULT")
    assert default.name == f"resnet20.{manifest.default_tag('resnet20')}"
    with pytest.raises(ValueError, match=r"resnet20\.nope.*resnet20\.cifar10"):
        zoo.get_weights("resnet20.nope")


@pytest.mark.parametrize("weights", ["object", "DEFAULT", "resnet20.cifar10", "cifar10"])
def test_create_model_takes_weights_as_torchvision_does(weights):
    w = zoo.get_weights("resnet20.cifar10")
    assert w.default  # so that "DEFAULT" names the same file
    model = zoo.create_model("resnet20", weights=w if weights == "object" else weights)
    reference = zoo.create_model("resnet20.cifar10", pretrained=True)
    ours, theirs = model.state_dict(), reference.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert model.pretrained_cfg["tag"] == "cifar10"


def test_weights_of_another_architecture_are_refused():
    with pytest.raises(ValueError, match="resnet32"):
        zoo.create_model("resnet32", weights=zoo.get_weights("resnet20.cifar10"))
    with pytest.raises(TypeError, match="weights=3"):
        zoo.create_model("resnet20", weights=3)


def test_the_transform_of_the_weights_is_the_one_the_model_was_measured_with():
    w = zoo.get_weights("resnet20.cifar10")
    record = next(r for r in json.loads((SAMPLES_DIR / "samples.json").read_text()) if r["dataset"] == "cifar10")
    image = Image.open(SAMPLES_DIR / record["file"]).convert("RGB")
    model = zoo.create_model("resnet20", weights=w).eval()
    x = w.transforms()(image)
    assert torch.equal(x, zoo.create_transform(model.pretrained_cfg)(image))
    with torch.no_grad():
        predicted = model(x[None]).argmax(1).item()
    assert w.label_names[predicted] == record["label"]


def test_torch_hub_entries_take_weights_default():
    model = torch.hub.load(str(ROOT), "resnet20", source="local", weights="DEFAULT")
    assert model.pretrained_cfg["tag"] == manifest.default_tag("resnet20")


@pytest.mark.slow
def test_weights_objects_import_nothing_heavy():
    code = (
        "import sys, zoo; w = zoo.get_weights('resnet50'); w.metrics; w.preprocessing; zoo.list_weights();"
        "print(sorted({'torchvision', 'timm', 'huggingface_hub'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


def test_weights_print_in_one_line_and_meta_reads_as_torchvisions():
    import torchvision

    w = zoo.get_weights("resnet50.tv2_in1k")
    assert repr(w) == "Weights('resnet50.tv2_in1k')"
    theirs = torchvision.models.ResNet50_Weights.IMAGENET1K_V2.meta
    assert w.meta["_metrics"] == theirs["_metrics"] and list(w.meta["categories"]) == theirs["categories"]
    assert w.meta["_metrics"] == {"ImageNet-1K": {"acc@1": w.metrics["top1"], "acc@5": w.metrics["top5"]}}


def test_an_empty_weights_name_is_refused_not_taken_as_the_default():
    with pytest.raises(TypeError, match="weights=''"):
        zoo.create_model("resnet20", weights="")
