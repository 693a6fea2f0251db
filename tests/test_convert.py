"""zoo convert: torchvision / timm / pickle checkpoints -> verified safetensors files and manifest entries.

Nothing can be downloaded here, so the upstream files are torchvision's and timm's own randomly
initialised models, saved the way they publish them.
"""

from __future__ import annotations

import dataclasses
import json
import pickle
import shutil

import pytest
import timm
import torch
import torchvision
from helpers import ROOT

import zoo
from zoo.cli import main as cli
from zoo.pretrained import cache, convert, manifest
from zoo.pretrained.files import WeightsMetadata, read_pickle_checkpoint

X = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))


@pytest.fixture
def repo_manifest_env(weights_env):
    """The repository's manifest, copied into the test's private weights folder, resnet18.tv_in1k unpublished."""
    for f in (ROOT / "weights").iterdir():  # the manifest and the files it names (bundled weights)
        if f.suffix in (".json", ".safetensors"):
            shutil.copyfile(f, weights_env.dir / f.name)
    manifest.update_entry("resnet18.tv_in1k", {"status": "unpublished", "sha256": None, "size": None}, merge=True)
    return weights_env


@pytest.fixture(scope="module")
def tv_resnet18_pth(tmp_path_factory):
    """torchvision's resnet18 as a .pth file named as torchvision names its download."""
    torch.manual_seed(1)
    model = torchvision.models.resnet18().eval()
    path = tmp_path_factory.mktemp("tv") / "resnet18-f37072fd.pth"
    torch.save(model.state_dict(), path)
    return path, model


def test_torchvision_file_with_another_hash_is_refused(repo_manifest_env, tv_resnet18_pth, capsys):
    path, _ = tv_resnet18_pth
    code = cli(["convert", "torchvision", "resnet18", "--weights", "IMAGENET1K_V1", "--file", str(path)])
    assert code == 2
    err = capsys.readouterr().err
    assert "resnet18-f37072fd.pth" in err and "--no-check-hash" in err
    assert not cache.converted_path("resnet18.tv_in1k").exists()


def test_torchvision_conversion_writes_a_verified_file_and_the_manifest_entry(repo_manifest_env, tv_resnet18_pth):
    path, model = tv_resnet18_pth
    before = repo_manifest_env.manifest()["weights"]["resnet18.tv_in1k"]
    with pytest.warns(UserWarning, match="f37072fd"):
        code = cli(
            ["convert", "torchvision", "resnet18", "--weights", "IMAGENET1K_V1", "--file", str(path), "--no-check-hash"]
        )
    assert code == 0
    out = cache.converted_path("resnet18.tv_in1k")
    after = repo_manifest_env.manifest()["weights"]["resnet18.tv_in1k"]
    # The entry describes upstream's files (timm's Hub repo, torchvision's URL): the manifest is left as it
    # is and the local conversion's SHA-256 is pinned in zoo's cache instead.
    assert after == before
    assert cache.read_pin("resnet18.tv_in1k", "converted") == {
        "sha256": cache.sha256_file(out),
        "size": out.stat().st_size,
    }
    # The entry now loads from the converted file, without network, and equals torchvision's model.
    loaded = zoo.create_model("resnet18.tv_in1k", pretrained=True).eval()
    assert loaded.pretrained_cfg["file"] == str(out)
    with torch.no_grad():
        torch.testing.assert_close(loaded(X), model(X), rtol=0, atol=0)
    # Conversion is deterministic: the same input gives the same bytes (so the hash can be published).
    upstream = WeightsMetadata(source="torchvision.models.ResNet18_Weights.IMAGENET1K_V1")
    entry = convert.torchvision_entry("resnet18", "IMAGENET1K_V1")[1]
    again = convert.convert_state_dict(
        "resnet18", model.state_dict(), out.with_name("again.safetensors"), metadata=upstream, entry=entry
    )
    assert again.sha256 == cache.sha256_file(out)
    meta = WeightsMetadata.from_header(zoo.pretrained.files.read_metadata(out))
    assert meta.architecture == "resnet18" and meta.source == upstream.source
    assert meta.pretrained_cfg["crop_pct"] == after["crop_pct"] and meta.model_args is None


def test_torchvision_entries_match_torchvisions_metadata():
    for name in manifest.weight_names():
        arch, tag = name.split(".")
        if not tag.startswith("tv"):
            continue
        entry = manifest.get_entry(arch, tag)
        member = {v: k for k, v in convert.TORCHVISION_TAGS.items()}[tag]
        w = torchvision.models.get_model_weights(arch)[member]
        assert entry.metrics["top1"] == w.meta["_metrics"]["ImageNet-1K"]["acc@1"]
        assert entry.metrics["top5"] == w.meta["_metrics"]["ImageNet-1K"]["acc@5"]
        assert entry.origin["url"] == w.url
        assert manifest.label_names(entry) == tuple(w.meta["categories"])


def test_published_hash_mismatch_leaves_the_manifest_unchanged(weights_env, tv_resnet18_pth):
    tag, entry = convert.torchvision_entry("resnet18", "IMAGENET1K_V1")
    weights_env.add(f"resnet18.{tag}", dataclasses.replace(entry, status="published", sha256="0" * 64, size=123))
    before = (weights_env.dir / "manifest.json").read_text()
    with pytest.warns(UserWarning, match="f37072fd"):
        code = cli(["convert", "torchvision", "resnet18", "--file", str(tv_resnet18_pth[0]), "--no-check-hash"])
    assert code == 2
    assert (weights_env.dir / "manifest.json").read_text() == before


def test_timm_resnet_conversion_creates_an_entry_from_timms_config(weights_env, tmp_path):
    torch.manual_seed(2)
    model = timm.create_model("resnet18").eval()
    path = tmp_path / "timm-resnet18.pth"
    torch.save(model.state_dict(), path)
    assert cli(["convert", "timm", "resnet18.a1_in1k", "--file", str(path)]) == 0
    entry = weights_env.manifest()["weights"]["resnet18.a1_in1k"]
    cfg = timm.models.get_pretrained_cfg("resnet18.a1_in1k")
    assert entry["interpolation"] == cfg.interpolation == "bicubic" and entry["crop_pct"] == cfg.crop_pct
    assert entry["status"] == "unpublished" and entry["default"] is True  # the arch's only weights here
    assert entry["source"]["repo_id"] == "{org}/resnet18.a1_in1k"
    loaded = zoo.create_model("resnet18", pretrained=True).eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(X), model(X), rtol=0, atol=0)


@pytest.mark.slow
def test_timm_vgg_pre_logits_map_back_to_linear_layers():
    torch.manual_seed(3)
    theirs = timm.create_model("vgg11").eval()
    with zoo.pretrained.load.empty_init():  # every tensor comes from timm's model
        ours = zoo.create_model("vgg11").eval()
    ours.load_state_dict(convert.timm_to_zoo("vgg11", theirs.state_dict()), strict=True, assign=True)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), rtol=1e-4, atol=1e-5)


def test_checkpoint_conversion_reads_training_checkpoints(tmp_path, capsys):
    torch.manual_seed(4)
    model = zoo.create_model("mnist_cnn", num_classes=5).eval()
    state = {f"module.{k}": v for k, v in model.state_dict().items()}  # saved from DataParallel
    path = tmp_path / "run.pth"
    torch.save({"state_dict": state, "epoch": 7, "optimizer": {"lr": 0.1}}, path)
    assert cli(["convert", "checkpoint", str(path), "--model", "mnist_cnn", "--num-classes", "5"]) == 0
    out = path.with_suffix(".safetensors")
    assert str(out) in capsys.readouterr().out
    loaded = zoo.create_model("mnist_cnn", checkpoint_path=out).eval()  # num_classes comes from the file
    assert json.loads(zoo.pretrained.files.read_metadata(out)["zoo.model_args"]) == {"num_classes": 5}
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


class _Boom:
    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


@pytest.mark.slow
def test_compiled_ddp_checkpoint_is_read(tmp_path):
    """torch.compile of a DDP model saves keys as ``_orig_mod.module.*``; the hand-written stripping missed it."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    torch.manual_seed(6)
    model = zoo.create_model("mnist_cnn").eval()
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        state = torch.compile(DistributedDataParallel(model)).state_dict()  # wrapping only: nothing is compiled
    finally:
        dist.destroy_process_group()
    assert all(k.startswith("_orig_mod.module.") for k in state)
    path = tmp_path / "compiled.pt"
    torch.save({"model": state, "epoch": 1}, path)
    assert list(read_pickle_checkpoint(path)) == list(model.state_dict())
    assert cli(["convert", "checkpoint", str(path), "--model", "mnist_cnn"]) == 0
    loaded = zoo.create_model("mnist_cnn", checkpoint_path=path.with_suffix(".safetensors")).eval()
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_timm_training_checkpoint_gives_what_timm_reads(weights_env, tmp_path):
    """A checkpoint of timm's train.py (with its argparse arguments and EMA): zoo reads what timm reads."""
    import argparse

    from timm.utils import CheckpointSaver, ModelEmaV3

    torch.manual_seed(7)
    model = timm.create_model("resnet18").eval()
    ema = ModelEmaV3(model)
    with torch.no_grad():
        model.fc.weight.add_(1.0)  # the EMA and the raw weights differ
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    saver = CheckpointSaver(
        model,
        optimizer,
        args=argparse.Namespace(model="resnet18"),
        model_ema=ema,
        checkpoint_dir=str(tmp_path),
        max_history=1,
    )
    saver.save_checkpoint(epoch=0, metric=1.0)
    path = next(tmp_path.glob("checkpoint-*.pth.tar"))
    for use_ema in (True, False):
        ours = read_pickle_checkpoint(path, prefer_ema=use_ema)
        theirs = timm.models.load_state_dict(str(path), use_ema=use_ema)
        assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert cli(["convert", "timm", "resnet18.a1_in1k", "--file", str(path)]) == 0  # timm's own: its EMA weights
    loaded = zoo.create_model("resnet18", pretrained=True).eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(X), ema.module.eval()(X), rtol=0, atol=0)


def test_conversion_never_runs_code_from_the_pickle(tmp_path, capsys):
    evidence = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps({"layer1.0.weight": _Boom(str(evidence))}, protocol=2))
    assert cli(["convert", "checkpoint", str(path), "--model", "mnist_cnn"]) == 2
    assert "weights_only" in capsys.readouterr().err
    assert not evidence.exists()


def test_wrong_architecture_is_reported(tmp_path, capsys):
    path = tmp_path / "r18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    assert cli(["convert", "checkpoint", str(path), "--model", "resnet34"]) == 2
    err = capsys.readouterr().err
    assert "layer1.2.conv1.weight" in err
    assert not path.with_suffix(".safetensors").exists()


def test_unknown_names_list_what_is_valid():
    with pytest.raises(ValueError, match="IMAGENET1K_V1, IMAGENET1K_V2"):
        convert.torchvision_weights("resnet50", "IMAGENET1K_V9")
    with pytest.raises(ValueError, match="resnet18, resnet34"):
        convert.torchvision_weights("mnist_cnn", "IMAGENET1K_V1")
