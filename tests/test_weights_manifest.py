"""The manifest: schema checks, default tags, atomic updates, and the generated files being current."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest
from helpers import ROOT, entry_for

import zoo
from zoo.pretrained import manifest
from zoo.pretrained.manifest import Source, WeightsEntry


@pytest.fixture
def repo_manifest(monkeypatch):
    monkeypatch.delenv("ZOO_WEIGHTS_DIR", raising=False)
    monkeypatch.delenv("ZOO_HUB_ORG", raising=False)


def test_repository_manifest_is_valid(repo_manifest):
    data = manifest.load_manifest()
    manifest.validate_manifest(data)
    assert manifest.weights_dir() == ROOT / "weights"
    # Stored in the stable format update_entry writes, so that edits make small diffs.
    assert (ROOT / "weights" / "manifest.json").read_text() == manifest.dumps(data)


def test_torchvision_imagenet_weights_are_listed(repo_manifest):
    names = set(zoo.list_models(pretrained=True))
    for arch in ("vgg11", "vgg13", "vgg16", "vgg19", "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn",
                 "resnet18", "resnet34", "resnet50", "resnet101", "resnet152"):  # fmt: skip
        assert f"{arch}.tv_in1k" in names
    assert {f"resnet{d}.tv2_in1k" for d in (50, 101, 152)} <= names
    assert manifest.default_tag("resnet50") == "tv2_in1k" and manifest.default_tag("vgg16") == "tv_in1k"


@pytest.mark.slow
def test_the_manifests_generated_fields_are_current(repo_manifest):
    """(The docs' generated pages are checked by the strict site build, tests/test_docs_site.py.)"""
    out = subprocess.run(
        [sys.executable, str(ROOT / "tools/gen_manifest.py"), "--check"], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr


def test_hub_org_comes_from_the_environment(repo_manifest, monkeypatch):
    entry = manifest.get_entry("vgg11_bn", "fashion_mnist")  # only this project can publish it
    assert entry.source.repo_id == "{org}/vgg11_bn.fashion_mnist"
    assert entry.source.resolved().repo_id == "zoo-models/vgg11_bn.fashion_mnist"
    monkeypatch.setenv("ZOO_HUB_ORG", "my-mirror")
    assert entry.source.resolved().repo_id == "my-mirror/vgg11_bn.fashion_mnist"
    # third-party repos keep their owner
    assert manifest.get_entry("resnet50", "tv2_in1k").source.resolved().repo_id == "timm/resnet50.tv2_in1k"


def test_unknown_names_list_the_existing_tags(repo_manifest):
    with pytest.raises(ValueError, match="resnet50.tv2_in1k, resnet50.tv_in1k|resnet50.tv_in1k, resnet50.tv2_in1k"):
        manifest.get_entry("resnet50", "nope")


GOOD = entry_for(None, {"type": "bundled", "path": "x.safetensors"}, status="unpublished")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"status": "done"}, "status"),
        ({"status": "published"}, "sha256"),  # this project's own file needs its hash and size
        ({"sha256": "abc"}, "sha256"),
        ({"source": {"type": "ftp"}}, "type"),
        ({"source": {"type": "bundled", "path": "../x.safetensors"}}, "path"),
        ({"source": {"type": "bundled", "path": "x.safetensors", "url": "https://h/x-0123abcd.pth"}}, "url"),
        ({"source": {"type": "hub", "repo_id": "noorg", "filename": "m.safetensors"}}, "repo_id"),
        ({"source": {"type": "hub", "repo_id": "a/b", "filename": "m.safetensors", "revision": "../x"}}, "revision"),
        ({"source": {"type": "url", "url": "https://h/x.pth"}}, "url"),  # no SHA-256 prefix in its name
        ({"source": {"type": "url", "url": "https://h/x-0123abcd.txt"}}, "url"),
        ({"source": {"type": "url", "url": "https://h/x-0123abcd.pth", "format": "torch"}}, "format"),
        ({"mean": [0.5, 0.5]}, "mean"),
        ({"std": [0.0]}, "std"),
        ({"crop_pct": 1.5}, "crop_pct"),
        ({"interpolation": "cubic"}, "interpolation"),
        ({"label_names": ["a", "b"]}, "label_names"),
        ({"label_names": 3}, "label_names"),
        ({"metrics": {"top1": 99.0}}, "command"),
        ({"metrics": {"top1": "high", "command": "x"}}, "top1"),
        ({"colour": "red"}, "colour"),
        ({"num_classes": "10"}, "num_classes"),
        ({"num_classes": True}, "num_classes"),
        ({"default": "yes"}, "default"),
        ({"input_size": [1, 28]}, "input_size"),
        ({"mean": "0.5"}, "mean"),
        ({"crop_mode": "random"}, "crop_mode"),
        ({"model_args": ["cifar"]}, "model_args"),
        ({"fallbacks": {"type": "url", "url": "https://h/y-0123abcd.pth"}}, "fallbacks"),
        ({"fallbacks": [{"type": "bundled", "path": "y.safetensors"}]}, "fallbacks"),
        ({"fallbacks": [{"type": "url", "url": "ftp://h/y-0123abcd.pth"}]}, "url"),
    ],
)
def test_bad_entries_are_rejected_naming_the_field_without_touching_the_file(weights_env, change, field):
    from zoo.errors import ManifestError

    before = (weights_env.dir / "manifest.json").read_bytes()
    with pytest.raises(ManifestError) as err:
        manifest.update_entry("mnist_cnn.bad", {**GOOD, **change})
    assert field in str(err.value) and "mnist_cnn.bad" in str(err.value)
    assert (weights_env.dir / "manifest.json").read_bytes() == before


def test_update_entry_writes_a_stable_sorted_file(weights_env, mnist_file):
    weights_env.add_bundled("mnist_cnn_deep.b", mnist_file)
    weights_env.add_bundled("mnist_cnn.b", mnist_file)
    text = (weights_env.dir / "manifest.json").read_text()
    data = json.loads(text)
    assert list(data["weights"]) == ["mnist_cnn.b", "mnist_cnn_deep.b"]
    assert list(data["weights"]["mnist_cnn.b"])[:3] == ["status", "source", "sha256"]
    assert '"input_size": [1, 28, 28]' in text  # short lists on one line
    assert manifest.dumps(data) == text
    leftovers = [p.name for p in weights_env.dir.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []
    # merge=True updates fields and keeps the rest.
    manifest.update_entry("mnist_cnn.b", {"notes": "trained for 3 epochs"}, merge=True)
    entry = weights_env.manifest()["weights"]["mnist_cnn.b"]
    assert entry["notes"] == "trained for 3 epochs" and entry["sha256"] == mnist_file.sha256


def test_one_default_per_arch(weights_env, mnist_file):
    weights_env.add_bundled("mnist_cnn.a", mnist_file, default=True)
    weights_env.add_bundled("mnist_cnn.b", mnist_file)
    assert manifest.default_tag("mnist_cnn") == "a"
    manifest.update_entry("mnist_cnn.b", {"default": True}, merge=True)
    data = weights_env.manifest()["weights"]
    assert manifest.default_tag("mnist_cnn") == "b" and "default" not in data["mnist_cnn.a"]
    manifest.update_entry("mnist_cnn.b", {"default": False}, merge=True)
    with pytest.raises(ValueError) as err:  # two entries, none marked: which one pretrained=True means is unsaid
        zoo.create_model("mnist_cnn", pretrained=True)
    assert "a, b" in str(err.value)  # the tags to choose from


def test_bundled_entry_must_match_its_file(weights_env, mnist_file):
    (weights_env.dir / "w.safetensors").write_bytes(mnist_file.data[:-1])
    entry = entry_for(mnist_file, {"type": "bundled", "path": "w.safetensors"})
    with pytest.raises(ValueError) as err:
        manifest.update_entry("mnist_cnn.w", entry)
    assert str(mnist_file.size - 1) in str(err.value) and str(mnist_file.size) in str(err.value)


def test_a_missing_required_field_is_named(weights_env):
    entry = {k: v for k, v in GOOD.items() if k != "std"}
    with pytest.raises(ValueError) as err:
        manifest.update_entry("mnist_cnn.x", entry)
    assert err.value.name == "std" and "mnist_cnn.x" in str(err.value)


def test_entries_are_typed_and_round_trip_to_the_same_json(repo_manifest):
    raw = manifest.load_manifest()["weights"]
    for name, data in raw.items():
        entry = manifest.get_entry(*name.split("."))
        assert isinstance(entry, WeightsEntry) and isinstance(entry.source, Source)
        assert isinstance(entry.input_size, tuple) and entry.published == (data["status"] == "published")
        # Same fields, same values, same order; the hash and size are written as null until known.
        written = entry.to_dict()
        assert {k: v for k, v in written.items() if k in data or v is not None} == data
        assert list(data) == [k for k in written if k in data]
    # The file's field order is WeightsEntry's: one definition, no parallel list.
    assert list(raw["mnist_cnn.mnist"]) == [f for f in WeightsEntry.field_names() if f in raw["mnist_cnn.mnist"]]


def test_entries_are_frozen_valid_copies_of_the_manifest(repo_manifest):
    entry = manifest.get_entry("resnet50", "tv2_in1k")
    assert entry is manifest.get_entry("resnet50", "tv2_in1k")  # parsed once per version of the file
    with pytest.raises(dataclasses.FrozenInstanceError):
        entry.status = "published"  # type: ignore[misc]
    assert dataclasses.replace(entry, notes="n").notes == "n" and entry.notes != "n"
    top1 = entry.metrics["top1"]
    try:
        entry.metrics["top1"] = 0.0  # a caller scribbling on the returned copy does not change the file's JSON
        assert manifest.load_manifest()["weights"]["resnet50.tv2_in1k"]["metrics"]["top1"] > 80
    finally:
        entry.metrics["top1"] = top1  # the parsed entry is cached for this process: later tests read it
    own = manifest.get_entry("vgg11_bn", "fashion_mnist")
    with pytest.raises(ValueError):
        dataclasses.replace(own, status="published")  # a WeightsEntry is valid or is not made
    with pytest.raises(TypeError):
        Source("hub")  # keyword-only


def test_update_entry_takes_a_typed_entry_and_returns_one(weights_env, mnist_file):
    entry = WeightsEntry.from_dict(entry_for(mnist_file, {"type": "bundled", "path": "t.safetensors"}), "mnist_cnn.t")
    (weights_env.dir / "t.safetensors").write_bytes(mnist_file.data)
    written = manifest.update_entry("mnist_cnn.t", dataclasses.replace(entry, default=True, notes="typed"))
    assert written == manifest.get_entry("mnist_cnn", "t") and written.notes == "typed" and written.default
    data = weights_env.manifest()["weights"]["mnist_cnn.t"]
    assert data["source"] == {"type": "bundled", "path": "t.safetensors"} and data["mean"] == [0.1307]


@pytest.mark.slow
def test_the_weights_tables_params_are_those_of_the_model_the_weights_are_for():
    """Each row's parameter count is the model's its weights build: builder arguments, classes and channels."""
    from zoo.pretrained.load import empty_init

    rows = [r for r in (ROOT / "docs" / "weights_table.md").read_text().splitlines() if r.startswith("| `")]
    assert rows
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        name, shown = cells[0].strip("`"), cells[6]
        arch, tag = name.split(".", 1)
        entry = manifest.get_entry(arch, tag)
        with empty_init():
            model = zoo.create_model(arch, **{**(entry.model_args or {}), "num_classes": entry.num_classes,
                                              "in_chans": entry.input_size[0]})  # fmt: skip
        assert shown == f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f} M", name


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"input_size": (1, 5000, 5000)}, "5000"),
        ({"crop_pct": 0.001}, "0.001"),
        ({"interpolation": "lanczos"}, "lanczos"),
        ({"std": (0.0,)}, "std"),
        ({"mean": (0.1, 0.2)}, "mean"),
    ],
)
def test_one_set_of_preprocessing_limits_for_models_manifest_entries_and_weight_files(bad, match, tmp_path):
    """A model's cfg, a manifest entry and a file's header refuse the same values, each with its own error."""
    from zoo.errors import ArgumentValueError, ManifestError, WeightsFileError
    from zoo.models import PretrainedCfg
    from zoo.pretrained.files import save_weights

    base = {"input_size": (1, 28, 28), "mean": (0.1307,), "std": (0.3081,), "crop_pct": 1.0}
    with pytest.raises(ArgumentValueError, match=match):
        PretrainedCfg(**{**base, **bad})
    with pytest.raises(ManifestError, match=match):
        WeightsEntry.from_dict({**GOOD, **{k: list(v) if isinstance(v, tuple) else v for k, v in bad.items()}})
    model = zoo.create_model("mnist_cnn")
    path = tmp_path / "hostile.safetensors"
    save_weights(model.state_dict(), path, {"zoo.pretrained_cfg": {**model.pretrained_cfg, **bad}})
    with pytest.raises(WeightsFileError, match=match):
        zoo.create_model("mnist_cnn", checkpoint_path=path)
