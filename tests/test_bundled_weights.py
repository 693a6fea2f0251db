"""The weights bundled in weights/: intact, small, and as accurate on the real test sets as the manifest says."""

from __future__ import annotations

import pytest

import zoo
from zoo.data import create_datasets
from zoo.evaluation import evaluate
from zoo.pretrained import manifest
from zoo.pretrained.cache import sha256_file

# The accuracy each bundled set of weights must reach: the goals set for them and, on CIFAR-10, the ResNet paper's.
BARS = {"mnist_cnn.mnist": 99.2, "resnet20.fashion_mnist": 93.0, "resnet20.cifar10": 91.25, "resnet32.cifar10": 92.49,
        "vgg11_bn.cifar10": 91.0}  # fmt: skip
MAX_BUNDLED_BYTES = 8 * 2**20  # "a few MB at most" per bundled file
# ...but for Lab10-5's VGG (VGG-11 with batch norm, CIFAR stem: 9.2 M parameters in float32), so the lab works offline.
LARGER = {"vgg11_bn.cifar10": 40 * 2**20}

BUNDLED = sorted(
    name for name in manifest.weight_names()
    if (e := manifest.get_entry(*name.split("."))).source.type == "bundled" and e.published
)  # fmt: skip


def test_the_promised_weights_are_bundled():
    promised = {"mnist_cnn.mnist", "mnist_cnn_deep.mnist", "resnet20.fashion_mnist", "resnet20.cifar10",
                "resnet32.cifar10", "vgg11_bn.cifar10"}  # fmt: skip
    assert promised <= set(BUNDLED)


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_file_matches_its_entry(name):
    entry = manifest.get_entry(*name.split("."))
    path = manifest.weights_dir() / entry.source.path
    assert path.stat().st_size == entry.size <= LARGER.get(name, MAX_BUNDLED_BYTES)
    assert sha256_file(path) == entry.sha256
    assert entry.metrics["command"].startswith(f"zoo eval {name} --pretrained")
    assert entry.origin["command"].startswith("zoo train ")


@pytest.mark.slow
@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_weights_reach_their_accuracy_on_the_real_test_set(name, shared_data):
    entry = manifest.get_entry(*name.split("."))
    model = zoo.create_model(name, pretrained=True)
    norm = (model.pretrained_cfg["mean"], model.pretrained_cfg["std"])
    _, test_set, _ = create_datasets(entry.dataset, str(shared_data), splits=("val",), normalization=norm)
    assert len(test_set) == 10_000
    results = evaluate(model, test_set, batch_size=1000)
    assert results["acc1"] == pytest.approx(entry.metrics["top1"], abs=0.1)
    assert results["acc5"] == pytest.approx(entry.metrics["top5"], abs=0.1)
    assert results["acc1"] >= BARS.get(name, 0.0)
