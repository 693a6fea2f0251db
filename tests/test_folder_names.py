"""timm's ``local-dir:PATH`` and ``hf-hub:ORG/NAME`` names: folders in timm's layout, zoo's published ones
included, from disk and from a loopback Hub, verified as manifest weights are."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch

import zoo
from zoo.errors import IntegrityError, OfflineError, WeightsFileError
from zoo.pretrained import manifest
from zoo.publish.card import timm_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(name="folder")
def folder_fixture(tmp_path: Path) -> Path:
    """resnet20.cifar10's bundled file and the config.json `zoo publish` writes for it."""
    reference = zoo.create_model("resnet20.cifar10", pretrained=True)
    out = tmp_path / "resnet20.cifar10"
    out.mkdir()
    entry = manifest.get_entry("resnet20", "cifar10")
    shutil.copyfile(manifest.weights_dir() / str(entry.source.path), out / "model.safetensors")
    config = timm_config(reference, "resnet20", {"model_args": {"num_classes": 10, "in_chans": 3}})
    (out / "config.json").write_text(json.dumps(config))
    return out


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return torch.equal(a.eval()(x), b.eval()(x))


def test_local_dir_loads_a_published_folder(folder):
    model = zoo.create_model(f"local-dir:{folder}", pretrained=True)
    assert _same(model, zoo.create_model("resnet20.cifar10", pretrained=True))
    cfg = model.pretrained_cfg
    assert list(cfg["mean"]) == list(zoo.get_weights("resnet20.cifar10").preprocessing["mean"])
    assert tuple(cfg["label_names"]) == zoo.get_weights("resnet20.cifar10").label_names
    # Without pretrained: timm's meaning, the folder's architecture and preprocessing with random weights.
    bare = zoo.create_model(f"local-dir:{folder}")
    assert bare.num_classes == 10 and not _same(bare, model)


def test_local_dir_refuses_what_is_not_a_model_folder(folder, tmp_path):
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "architecture": "os.system"}))
    with pytest.raises(WeightsFileError, match="'os.system'"):  # the architecture it names
        zoo.create_model(f"local-dir:{folder}", pretrained=True)
    with pytest.raises(WeightsFileError) as e:
        zoo.create_model(f"local-dir:{tmp_path}", pretrained=True)
    assert str(tmp_path) in str(e.value) and "config.json" in str(e.value)  # the folder and the file it lacks
    (folder / "config.json").write_text(json.dumps({**config, "pretrained_cfg": {"std": [0, 1, 1]}}))
    with pytest.raises(WeightsFileError, match="std"):
        zoo.create_model(f"local-dir:{folder}", pretrained=True)


def test_hf_hub_downloads_verifies_caches_and_works_offline(folder, weights_env, server, monkeypatch):
    repo = "someone/resnet20.cifar10"
    data = (folder / "model.safetensors").read_bytes()
    server.add_hub(repo, "model.safetensors", data)
    server.add_hub(repo, "config.json", (folder / "config.json").read_bytes(), sha256=None)  # a plain git file
    model = zoo.create_model(f"hf-hub:{repo}", pretrained=True)
    assert _same(model, zoo.create_model(f"local-dir:{folder}", pretrained=True))  # (the manifest is a test's own)
    requests = len(server.requests)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert _same(zoo.create_model(f"hf-hub:{repo}", pretrained=True), model)  # from the cache
    assert len(server.requests) == requests
    # Both files are in zoo's cache, each named by the SHA-256 it was verified against.
    for name in ("config.json", "model.safetensors"):
        sha = hashlib.sha256((folder / name).read_bytes()).hexdigest()
        assert any(p.name.startswith(sha) for p in weights_env.cached_files()), name
    assert weights_env.hf_files() == []


def test_hf_hub_refuses_a_file_that_is_not_what_the_hub_announces(folder, weights_env, server):
    repo = "someone/tampered"
    server.add_hub(repo, "model.safetensors", (folder / "model.safetensors").read_bytes(), sha256="0" * 64)
    server.add_hub(repo, "config.json", (folder / "config.json").read_bytes(), sha256=None)
    with pytest.raises(IntegrityError, match="hf-hub:someone/tampered"):
        zoo.create_model(f"hf-hub:{repo}", pretrained=True)
    assert [p.suffix for p in weights_env.cached_files()] == [".json"]  # config.json only: no weights kept


def test_hf_hub_offline_with_only_the_config_cached_says_what_to_do_once(folder, weights_env, server, monkeypatch):
    repo = "someone/config-only"
    server.add_hub(repo, "model.safetensors", (folder / "model.safetensors").read_bytes())
    server.add_hub(repo, "config.json", (folder / "config.json").read_bytes(), sha256=None)
    zoo.create_model(f"hf-hub:{repo}")  # the architecture only: config.json is cached, the weights are not
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OfflineError, match=f"hf-hub:{repo}") as caught:
        zoo.create_model(f"hf-hub:{repo}", pretrained=True)
    assert caught.value.hint and str(caught.value).count(caught.value.hint) == 1


def test_hf_hub_offline_without_a_cache_says_so(weights_env, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OfflineError, match="someone/never-fetched"):
        zoo.create_model("hf-hub:someone/never-fetched", pretrained=True)
    with pytest.raises(ValueError, match=r"\.\./\.\./etc"):  # the name that is not a repo id
        zoo.create_model("hf-hub:../../etc", pretrained=True)


def test_a_local_dir_under_an_unknown_home_folder_is_a_clear_error():
    with pytest.raises(WeightsFileError) as err:
        zoo.create_model("local-dir:~nouser-zoo-test/x")
    assert "~nouser-zoo-test/x" in str(err.value)
