"""Loading weights into models: fast path, strictness, adaptation, pickle refusal, torchvision parity."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys

import pytest
import torch
import torchvision
from helpers import IMAGENET_FIELDS, subprocess_env
from safetensors.torch import load_file as st_load

import zoo
from zoo.errors import WeightsError, WeightsFileError
from zoo.pretrained import files, load
from zoo.pretrained.cache import sha256_file
from zoo.pretrained.files import WeightsMetadata

X = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))


@pytest.fixture
def resnet18_env(weights_env, resnet18_file):
    weights_env.add_bundled("resnet18.test", resnet18_file, **IMAGENET_FIELDS)
    return weights_env


def _no_meta(model: torch.nn.Module) -> bool:
    return not any(t.is_meta for t in (*model.parameters(), *model.buffers()))


def test_pretrained_equals_the_source_model(resnet18_env, resnet18_file):
    model = zoo.create_model("resnet18.test", pretrained=True).eval()
    assert _no_meta(model)
    with torch.no_grad():
        torch.testing.assert_close(model(X), resnet18_file.model(X), rtol=0, atol=0)
    ref = resnet18_file.model.state_dict()
    for key, value in model.state_dict().items():  # buffers too: BN statistics are real, not defaults
        assert torch.equal(value, ref[key]), key
    cfg = model.pretrained_cfg
    assert cfg["tag"] == "test" and cfg["num_classes"] == 1000 and len(cfg["label_names"]) == 1000
    assert cfg["label_names"][0] == "tench"


def test_loaded_tensors_are_writable_and_do_not_touch_the_file(resnet18_env, resnet18_file):
    model = zoo.create_model("resnet18.test", pretrained=True)
    path = resnet18_env.dir / "resnet18.test.safetensors"
    with torch.no_grad():
        model.conv1.weight.add_(1.0)  # what an optimiser step does
    loss = model(X).sum()
    loss.backward()
    assert model.conv1.weight.grad is not None and model.conv1.weight.requires_grad
    assert path.read_bytes() == resnet18_file.data


def test_torchvision_loads_zoos_file_unchanged(resnet18_env, resnet18_file):
    zoo_model = zoo.create_model("resnet18.test", pretrained=True).eval()
    tv = torchvision.models.resnet18()
    tv.load_state_dict(st_load(resnet18_env.dir / "resnet18.test.safetensors"), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(tv.eval()(X), zoo_model(X), rtol=0, atol=0)


@pytest.mark.parametrize("arch", ["vgg11", "vgg16_bn", "vgg19", "resnet50", "resnet152"])
def test_state_dict_layout_equals_torchvisions(arch):
    with load.empty_init():
        ours = zoo.create_model(arch).state_dict()
        theirs = torchvision.models.get_model(arch).state_dict()
    assert [(k, v.shape) for k, v in ours.items()] == [(k, v.shape) for k, v in theirs.items()]


def test_new_head_keeps_the_backbone_and_warns_naming_the_keys(resnet18_env, resnet18_file):
    with pytest.warns(UserWarning, match=r"fc\.weight, fc\.bias.*1000.*10"):
        model = zoo.create_model("resnet18.test", pretrained=True, num_classes=10).eval()
    assert _no_meta(model) and model.fc.weight.shape == (10, 512)
    assert model.fc.weight.std() > 0  # initialised, not left empty
    assert model.pretrained_cfg["num_classes"] == 10 and model.pretrained_cfg["label_names"] is None
    tv = resnet18_file.model
    tv_features = torch.nn.Sequential(*list(tv.children())[:-1])  # everything but fc
    with torch.no_grad():
        pooled = model.forward_head(model.forward_features(X), pre_logits=True)
        torch.testing.assert_close(pooled, tv_features(X).flatten(1), rtol=0, atol=0)
        assert model(X).shape == (2, 10)


def test_num_classes_zero_gives_pooled_features(resnet18_env, resnet18_file):
    with pytest.warns(UserWarning, match=r"fc\.weight, fc\.bias"):
        model = zoo.create_model("resnet18.test", pretrained=True, num_classes=0).eval()
    tv = resnet18_file.model
    tv_features = torch.nn.Sequential(*list(tv.children())[:-1])
    with torch.no_grad():
        torch.testing.assert_close(model(X), tv_features(X).flatten(1), rtol=0, atol=0)


def test_one_input_channel_sums_over_rgb(resnet18_env, resnet18_file):
    with pytest.warns(UserWarning, match=r"conv1\.weight.* 3 .* 1 "):
        model = zoo.create_model("resnet18.test", pretrained=True, in_chans=1).eval()
    grey = X[:, :1]
    with torch.no_grad():
        torch.testing.assert_close(model(grey), resnet18_file.model(grey.repeat(1, 3, 1, 1)), rtol=1e-4, atol=1e-5)
    assert model.pretrained_cfg["input_size"] == (1, 224, 224) and len(model.pretrained_cfg["mean"]) == 1


@pytest.mark.parametrize("in_chans", [4, 6])
def test_n_input_channels_repeat_and_rescale(resnet18_env, resnet18_file, in_chans):
    with pytest.warns(UserWarning, match=rf"conv1\.weight.* 3 .* {in_chans} "):
        model = zoo.create_model("resnet18.test", pretrained=True, in_chans=in_chans).eval()
    original = resnet18_file.model.conv1.weight
    w = model.conv1.weight.detach()
    expected = original.repeat(1, 2, 1, 1)[:, :in_chans] * (3 / in_chans)
    torch.testing.assert_close(w, expected)
    if in_chans == 6:  # two copies of an RGB image give the original response
        with torch.no_grad():
            torch.testing.assert_close(model(X.repeat(1, 2, 1, 1)), resnet18_file.model(X), rtol=1e-4, atol=1e-5)


def test_mismatch_is_an_error_listing_what_differs(resnet18_env):
    with pytest.raises(WeightsError) as err:
        zoo.create_model("resnet18.test", pretrained=True, stem="cifar")
    assert err.value.mismatched == ["conv1.weight"] and not err.value.missing and not err.value.unexpected
    assert "(64, 3, 7, 7)" in str(err.value) and "(64, 3, 3, 3)" in str(err.value)


def test_missing_and_unexpected_keys_are_listed(resnet18_file, tmp_path):
    state = dict(st_load(resnet18_file.path))
    state["extra.weight"] = torch.zeros(3)
    del state["layer1.0.bn1.running_var"]
    path = tmp_path / "odd.safetensors"
    files.save_weights(state, path)
    model = zoo.create_model("resnet18")
    before = model.conv1.weight.clone()
    with pytest.raises(WeightsError) as err:
        zoo.load_weights(model, path)
    assert err.value.missing == ["layer1.0.bn1.running_var"] and err.value.unexpected == ["extra.weight"]
    assert torch.equal(model.conv1.weight, before)  # nothing was loaded


def test_a_different_head_without_num_classes_is_an_error_with_a_hint(resnet18_file, tmp_path):
    model = zoo.create_model("resnet18", num_classes=10)
    with pytest.raises(WeightsError) as err:
        zoo.load_weights(model, resnet18_file.path)
    assert sorted(err.value.mismatched) == ["fc.bias", "fc.weight"] and "num_classes=10" in str(err.value)
    with pytest.warns(UserWarning, match=r"fc\.weight, fc\.bias"):
        zoo.load_weights(model, resnet18_file.path, adapt=True)
    assert torch.equal(model.layer4[1].conv2.weight, resnet18_file.model.layer4[1].conv2.weight)


def test_tag_without_pretrained_gets_the_config_but_random_weights(monkeypatch):
    monkeypatch.delenv("ZOO_WEIGHTS_DIR", raising=False)  # the repository's manifest
    model = zoo.create_model("resnet50.tv2_in1k")
    cfg = model.pretrained_cfg
    assert cfg["tag"] == "tv2_in1k" and cfg["crop_pct"] == pytest.approx(224 / 232)
    assert cfg["label_names"][:2] == ("tench", "goldfish") and cfg["hf_hub_id"] == "timm/resnet50.tv2_in1k"
    assert cfg["url"] == "https://download.pytorch.org/models/resnet50-11ad3fa6.pth"  # the fallback, as in timm
    assert _no_meta(model) and model.fc.weight.std() > 0


def test_checkpoint_path_brings_its_own_config(tmp_path):
    torch.manual_seed(3)
    trained = zoo.create_model("mnist_cnn", num_classes=5)
    path = tmp_path / "run.safetensors"
    files.save_weights(trained, path, metadata={"epochs": 3})
    assert files.read_metadata(path)["epochs"] == "3"
    model = zoo.create_model("mnist_cnn", checkpoint_path=path)
    assert model.num_classes == 5 and model.pretrained_cfg["file"] == str(path)
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), trained.eval()(x))


class _Boom:
    """Unpickling this runs code: it would create a file."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


@pytest.mark.parametrize("suffix", [".pth", ".pt", ".bin", ".safetensors"])
def test_pickle_files_are_refused_and_never_unpickled(tmp_path, suffix):
    evidence = tmp_path / "pwned"
    path = tmp_path / f"evil{suffix}"
    path.write_bytes(pickle.dumps({"conv1.weight": _Boom(str(evidence))}))
    with pytest.raises(WeightsFileError) as err:
        zoo.create_model("mnist_cnn", checkpoint_path=path)
    assert str(path) in str(err.value) and "zoo convert checkpoint" in err.value.hint
    with pytest.raises(WeightsFileError):
        zoo.load_weights(zoo.create_model("mnist_cnn"), path)
    assert not evidence.exists()


def test_torch_save_zip_files_are_refused(tmp_path):
    path = tmp_path / "model.safetensors"  # the name does not matter, the content does
    torch.save(zoo.create_model("mnist_cnn").state_dict(), path)
    with pytest.raises(WeightsFileError) as err:
        zoo.load_weights(zoo.create_model("mnist_cnn"), path)
    assert "zoo convert checkpoint" in err.value.hint


def test_save_weights_is_atomic_and_reports_the_hash(tmp_path, mnist_file):
    path = tmp_path / "w.safetensors"
    path.write_bytes(b"old contents")
    with pytest.raises(TypeError, match="'b'"):
        files.save_weights({"a": torch.zeros(2), "b": "nope"}, path)
    assert path.read_bytes() == b"old contents"
    saved = files.save_weights(mnist_file.model, path)
    assert saved.path == path and saved.size == path.stat().st_size
    assert saved.sha256 == sha256_file(path)
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]  # no temporary file left
    assert json.loads(files.read_metadata(path)["zoo.pretrained_cfg"])["num_classes"] == 10


LIGHT = """
import json, sys
import zoo
m = zoo.create_model(sys.argv[1], pretrained=True)
heavy = [name for name in ("torchvision", "timm", "huggingface_hub") if name in sys.modules]
print(json.dumps({"heavy": heavy, "meta": any(t.is_meta for t in m.parameters())}))
"""


@pytest.mark.slow
def test_pretrained_loading_imports_neither_torchvision_nor_timm(resnet18_env, mnist_file, server):
    resnet18_env.add_hub("mnist_cnn.hub", mnist_file)
    zoo.pretrained.fetch.fetch("mnist_cnn.hub")  # warm the cache
    requests = len(server.requests)
    for name in ("resnet18.test", "mnist_cnn.hub"):
        out = subprocess.run(
            [sys.executable, "-c", LIGHT, name],
            env=subprocess_env(),
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        assert json.loads(out.stdout) == {"heavy": [], "meta": False}, name
    assert len(server.requests) == requests  # a warm cache needs no request (and no huggingface_hub)


@pytest.mark.parametrize("in_chans", [1, 2, 3, 4, 6, 7])
def test_adapt_input_conv_equals_timms(in_chans):
    from timm.models import adapt_input_conv as timm_adapt

    weight = torch.randn(8, 3, 3, 3, generator=torch.Generator().manual_seed(in_chans))
    torch.testing.assert_close(load.adapt_input_conv(weight, in_chans), timm_adapt(in_chans, weight.clone()))


def test_weights_metadata_is_stored_under_zoos_header_keys(tmp_path):
    model = zoo.create_model("mnist_cnn", num_classes=5)
    meta = WeightsMetadata(
        architecture="mnist_cnn",
        tag="t",
        num_classes=5,
        model_args={"num_classes": 5},
        source="upstream x",
        epoch=3,
        metric=97.5,
        extra={"note": "mine"},
    )
    path = files.save_weights(model, tmp_path / "m.safetensors", meta).path
    header = files.read_metadata(path)
    # The on-disk names are a file format: files written by older zoo versions and other tools rely on them.
    assert {k: header[k] for k in ("zoo.architecture", "zoo.tag", "zoo.num_classes", "zoo.epoch", "zoo.metric")} == {
        "zoo.architecture": "mnist_cnn",
        "zoo.tag": "t",
        "zoo.num_classes": "5",
        "zoo.epoch": "3",
        "zoo.metric": "97.5",
    }
    assert json.loads(header["zoo.model_args"]) == {"num_classes": 5} and header["zoo.source"] == "upstream x"
    assert json.loads(header["zoo.pretrained_cfg"])["num_classes"] == 5  # the model's own cfg, added by save_weights
    assert header["format"] == "pt" and header["note"] == "mine"
    back = WeightsMetadata.from_header(header)
    assert back.epoch == 3 and back.metric == 97.5 and back.model_args == {"num_classes": 5}
    assert back.pretrained_cfg["input_size"] == [1, 28, 28] and back.extra == {"format": "pt", "note": "mine"}
    assert zoo.create_model("mnist_cnn", checkpoint_path=path).num_classes == 5


def test_bad_metadata_is_an_error_naming_the_file_and_key(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "bad.safetensors"
    save_file(zoo.create_model("mnist_cnn").state_dict(), path, metadata={"zoo.model_args": "{not json"})
    with pytest.raises(WeightsFileError) as err:
        zoo.create_model("mnist_cnn", checkpoint_path=path)
    assert err.value.name == "zoo.model_args" and err.value.value == "{not json"


@pytest.mark.parametrize("enabled", [True, False])
def test_loading_leaves_garbage_collection_as_it_was(enabled, tmp_path):
    """create_model pauses the cyclic GC while it loads (a speed measure) and always restores the setting."""
    import gc

    path = tmp_path / "w.safetensors"
    files.save_weights(zoo.create_model("mnist_cnn").state_dict(), path)
    previous = gc.isenabled()
    try:
        gc.enable() if enabled else gc.disable()
        zoo.create_model("mnist_cnn", checkpoint_path=path)
        assert gc.isenabled() == enabled
        with pytest.raises(FileNotFoundError):
            zoo.create_model("mnist_cnn", checkpoint_path=tmp_path / "missing.safetensors")
        assert gc.isenabled() == enabled
    finally:
        gc.enable() if previous else gc.disable()


def test_source_identity_never_follows_weights_into_a_new_head_or_a_new_file(tmp_path):
    """timm's filter_pretrained_cfg(remove_source=True): file, sha256, source and tag describe one file only."""
    import warnings

    from zoo.models.cfg import SOURCE_KEYS
    from zoo.pretrained.files import read_metadata

    loaded = zoo.create_model("mnist_cnn.mnist", pretrained=True)
    assert loaded.pretrained_cfg["sha256"] and loaded.pretrained_cfg["file"] and loaded.pretrained_cfg["tag"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the new head's warning
        new_head = zoo.create_model("mnist_cnn.mnist", pretrained=True, num_classes=5)
    assert not set(SOURCE_KEYS) & {k for k, v in new_head.pretrained_cfg.items() if v is not None}
    zoo.save_weights(loaded, tmp_path / "mine.safetensors")
    written = json.loads(read_metadata(tmp_path / "mine.safetensors")["zoo.pretrained_cfg"])
    assert not set(SOURCE_KEYS) & set(written) and written["mean"] == list(loaded.pretrained_cfg["mean"])


@pytest.mark.parametrize("wrapper", ["DataParallel", "compile", "compile(DataParallel)"])
def test_a_state_dict_saved_from_a_wrapper_loads_as_zoo_eval_reads_it(wrapper, tmp_path):
    # DDP/DataParallel prefix every key with "module.", torch.compile with "_orig_mod."; zoo eval and resume
    # read such checkpoints, and so do create_model(checkpoint_path=) and load_weights (timm's rules).
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = zoo.create_model("resnet20").eval()
    wrapped = {
        "DataParallel": lambda m: torch.nn.DataParallel(m),
        "compile": lambda m: torch.compile(m),
        "compile(DataParallel)": lambda m: torch.compile(torch.nn.DataParallel(m)),
    }[wrapper](model)
    state = wrapped.state_dict()
    assert all(k.startswith(("module.", "_orig_mod.")) for k in state)
    path = tmp_path / "wrapped.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    x = torch.randn(2, 3, 32, 32)
    loaded = zoo.create_model("resnet20", checkpoint_path=str(path)).eval()
    again = load.load_weights(zoo.create_model("resnet20"), path).eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
        torch.testing.assert_close(again(x), model(x), rtol=0, atol=0)
