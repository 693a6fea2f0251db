"""Third-party weights (timm's Hub repos, torchvision's .pth URLs) on loopback servers: verified, pinned,
with fallbacks, and equal to torchvision's model holding the same weights."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import warnings
from pathlib import Path

import pytest
import torch
import torchvision
from helpers import IMAGENET_FIELDS, entry_for
from weights_server import COMMIT

import zoo
from zoo.cli import main as cli
from zoo.errors import IntegrityError, OfflineError, WeightsError
from zoo.pretrained import cache, fetch, manifest

X = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
OTHER_COMMIT = "fedcba9876543210fedcba9876543210fedcba98"


def _bytes(state: dict[str, torch.Tensor]) -> bytes:
    from safetensors.torch import save

    return save({k: v.contiguous() for k, v in state.items()})


@pytest.fixture(scope="module")
def timm_files() -> dict[str, tuple[bytes, dict[str, torch.Tensor]]]:
    """timm's own resnet18 and vgg11, randomly initialised, as the safetensors bytes timm publishes."""
    import timm

    torch.manual_seed(0)
    out = {}
    for arch in ("resnet18", "vgg11"):
        state = timm.create_model(arch, pretrained=False).state_dict()
        out[arch] = (_bytes(state), state)
    return out


def _pth(state: dict[str, torch.Tensor]) -> tuple[bytes, str]:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = buffer.getvalue()
    return data, hashlib.sha256(data).hexdigest()


def _add(env, name: str, repo: str | None, url: str | None = None, **fields) -> None:
    """A third-party entry: timm-style Hub repo ``repo`` first, then the torchvision-style ``url``."""
    sources = []
    if repo:
        sources.append({"type": "hub", "repo_id": repo, "filename": "model.safetensors", "revision": "main"})
    if url:
        sources.append({"type": "url", "url": url})
    entry = entry_for(None, sources[0], **{**IMAGENET_FIELDS, "sha256": None, "size": None, **fields})
    if len(sources) > 1:
        entry["fallbacks"] = sources[1:]
    env.add(name, entry)


def _tv_model(arch: str, state: dict[str, torch.Tensor]) -> torch.nn.Module:
    from zoo.pretrained.load import from_timm_layout

    model = torchvision.models.get_model(arch).eval()
    model.load_state_dict(dict(from_timm_layout(state)))
    return model


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["resnet18", "vgg11"])
def test_timm_hub_weights_give_torchvision_outputs_and_are_pinned(weights_env, timm_files, arch, monkeypatch):
    data, state = timm_files[arch]
    repo = f"{weights_env.org}-timm/{arch}.tv_in1k"
    weights_env.server.add_hub(repo, "model.safetensors", data)
    _add(weights_env, f"{arch}.tv_in1k", repo)
    model = zoo.create_model(f"{arch}.tv_in1k", pretrained=True).eval()
    with torch.no_grad():
        torch.testing.assert_close(model(X), _tv_model(arch, state)(X), rtol=0, atol=0)
    assert model.pretrained_cfg["hf_hub_id"] == repo
    record = cache.read_pin(f"{arch}.tv_in1k", f"hub:{repo}/model.safetensors")
    assert record == {"commit": COMMIT, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    # Offline, from the pinned cache: no request, same weights.
    requests = len(weights_env.server.requests)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    again = zoo.create_model(f"{arch}.tv_in1k", pretrained=True).eval()
    assert len(weights_env.server.requests) == requests
    with torch.no_grad():
        torch.testing.assert_close(again(X), model(X), rtol=0, atol=0)


def test_a_wrong_hub_sha256_is_refused_and_nothing_is_cached(weights_env, timm_files):
    data, _ = timm_files["resnet18"]
    repo = f"{weights_env.org}-timm/resnet18.tv_in1k"
    weights_env.server.add_hub(repo, "model.safetensors", data, sha256="ab" * 32)  # the Hub's record is not the file
    _add(weights_env, "resnet18.tv_in1k", repo)
    with pytest.raises(IntegrityError) as err:
        zoo.create_model("resnet18.tv_in1k", pretrained=True)
    assert "ab" * 32 in str(err.value) and hashlib.sha256(data).hexdigest() in str(err.value)
    assert weights_env.cached_files() == []
    assert cache.read_pin("resnet18.tv_in1k", f"hub:{repo}/model.safetensors") is None


def test_a_third_party_hub_file_without_a_sha256_is_refused(weights_env, timm_files):
    data, _ = timm_files["resnet18"]
    repo = f"{weights_env.org}-timm/resnet18.tv_in1k"
    weights_env.server.add_hub(repo, "model.safetensors", data, sha256=None)  # a plain git file: no X-Linked-Etag
    _add(weights_env, "resnet18.tv_in1k", repo)
    with pytest.raises(IntegrityError) as err:
        fetch.fetch("resnet18.tv_in1k")
    assert repo in str(err.value)
    assert weights_env.cached_files() == []


def test_an_upstream_change_at_the_pinned_commit_is_refused(weights_env, timm_files, capsys):
    data, state = timm_files["resnet18"]
    repo = f"{weights_env.org}-timm/resnet18.tv_in1k"
    weights_env.server.add_hub(repo, "model.safetensors", data)
    _add(weights_env, "resnet18.tv_in1k", repo)
    first = fetch.fetch("resnet18.tv_in1k")
    changed = _bytes({k: v + 1 if v.is_floating_point() else v for k, v in state.items()})
    weights_env.server.add_hub(repo, "model.safetensors", changed)  # same commit, another file
    changed_sha = hashlib.sha256(changed).hexdigest()
    with pytest.raises(IntegrityError) as err:
        fetch.fetch("resnet18.tv_in1k", force=True)
    assert changed_sha in str(err.value) and "--unpin" in str(err.value.hint)
    assert first.read_bytes() == data  # the verified copy stays
    # The cached copy is replaced behind zoo's back: it is not used, and the Hub's new file is not taken either.
    os.chmod(first, 0o644)
    first.write_bytes(changed)
    with pytest.warns(UserWarning, match=str(first)), pytest.raises(IntegrityError) as err:
        fetch.fetch("resnet18.tv_in1k")
    assert changed_sha in str(err.value)
    # A maintainer who knows the change is legitimate forgets the pin.
    assert cli(["download", "resnet18.tv_in1k", "--unpin"]) == 0
    assert "resnet18.tv_in1k" in capsys.readouterr().out
    assert fetch.fetch("resnet18.tv_in1k").read_bytes() == changed


def test_a_hub_that_answers_for_another_commit_than_the_pinned_one_is_refused(weights_env, timm_files):
    data, _ = timm_files["resnet18"]
    repo = f"{weights_env.org}-timm/resnet18.tv_in1k"
    weights_env.server.add_hub(repo, "model.safetensors", data)
    _add(weights_env, "resnet18.tv_in1k", repo)
    fetch.fetch("resnet18.tv_in1k")
    weights_env.server.commits[f"/{repo}/resolve/{COMMIT}/model.safetensors"] = OTHER_COMMIT
    with pytest.raises(IntegrityError) as err:
        fetch.fetch("resnet18.tv_in1k", force=True)
    assert OTHER_COMMIT in str(err.value) and COMMIT in str(err.value)


def test_the_torchvision_url_serves_when_the_hub_cannot(weights_env, timm_files):
    _, state = timm_files["resnet18"]
    pth, sha = _pth(state)
    url = weights_env.server.add(f"/{weights_env.org}-tv/models/resnet18-{sha[:8]}.pth", pth)
    _add(weights_env, "resnet18.tv_in1k", f"{weights_env.org}-timm/missing", url)  # the repo does not exist
    with pytest.warns(UserWarning, match=rf"{re.escape(url)}.*404"):
        model = zoo.create_model("resnet18.tv_in1k", pretrained=True).eval()
    with torch.no_grad():
        torch.testing.assert_close(model(X), _tv_model("resnet18", state)(X), rtol=0, atol=0)
    path = Path(model.pretrained_cfg["file"])
    assert weights_env.cached_files() == [path]  # converted once; the .pth is not kept
    record = cache.read_pin("resnet18.tv_in1k", f"url:{url}")
    assert record["sha256"] == sha and record["size"] == len(pth) and path.name.startswith(record["converted_sha256"])
    # Warm: the converted file, verified by its marker, no request at all.
    requests = len(weights_env.server.requests)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert fetch.fetch("resnet18.tv_in1k") == path
    assert len(weights_env.server.requests) == requests


def test_torchvisions_own_download_is_used_offline_before_the_network(weights_env, timm_files, tmp_path, monkeypatch):
    _, state = timm_files["resnet18"]
    pth, sha = _pth(state)
    name = f"resnet18-{sha[:8]}.pth"
    url = weights_env.server.endpoint + f"/{weights_env.org}-tv/never-served/{name}"
    _add(weights_env, "resnet18.tv_in1k", f"{weights_env.org}-timm/missing", url)
    torch_home = tmp_path / "torch-home"
    (torch_home / "hub" / "checkpoints").mkdir(parents=True)
    (torch_home / "hub" / "checkpoints" / name).write_bytes(pth)  # where torchvision keeps its downloads
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    requests = len(weights_env.server.requests)
    model = zoo.create_model("resnet18.tv_in1k", pretrained=True).eval()
    assert len(weights_env.server.requests) == requests  # no request: torchvision's file, checked and converted
    with torch.no_grad():
        torch.testing.assert_close(model(X), _tv_model("resnet18", state)(X), rtol=0, atol=0)
    assert Path(model.pretrained_cfg["file"]).is_relative_to(weights_env.cache)
    # A file there whose hash does not start with its name's prefix is not used.
    other = torch_home / "hub" / "checkpoints" / name
    other.write_bytes(pth + b"x")
    for converted in weights_env.cached_files():
        converted.unlink()
    for pin in (weights_env.cache / "pins").glob("*"):
        pin.unlink()
    with pytest.warns(UserWarning, match=str(other)), pytest.raises(WeightsError):
        zoo.create_model("resnet18.tv_in1k", pretrained=True)


def test_when_every_source_fails_the_error_names_each(weights_env):
    url = weights_env.server.endpoint + f"/{weights_env.org}-tv/gone/resnet18-0123abcd.pth"
    _add(weights_env, "resnet18.tv_in1k", f"{weights_env.org}-timm/missing", url)
    with pytest.raises(WeightsError) as err:
        fetch.fetch("resnet18.tv_in1k")
    lines = str(err.value).splitlines()
    assert f"{weights_env.org}-timm/missing" in lines[1] and "404" in lines[1]
    assert url in lines[2] and "404" in lines[2]
    assert not isinstance(err.value, IntegrityError)


def test_a_torchvision_file_that_is_not_the_named_one_is_refused(weights_env, timm_files):
    pth, sha = _pth(timm_files["resnet18"][1])
    wrong = "0" * 8 if not sha.startswith("0") else "1" * 8
    url = weights_env.server.add(f"/{weights_env.org}-tv/resnet18-{wrong}.pth", pth)
    _add(weights_env, "resnet18.tv_in1k", None, url)
    with pytest.raises(IntegrityError) as err:
        fetch.fetch("resnet18.tv_in1k")
    assert wrong in str(err.value) and sha in str(err.value)
    assert weights_env.cached_files() == []


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_with_a_code_payload_behind_a_torchvision_url_never_runs(weights_env, tmp_path):
    marker = tmp_path / "payload-ran"
    buffer = io.BytesIO()
    torch.save({"conv1.weight": torch.zeros(1), "evil": _Payload(marker)}, buffer)
    data = buffer.getvalue()
    sha = hashlib.sha256(data).hexdigest()  # the name's prefix is right: only the content is hostile
    url = weights_env.server.add(f"/{weights_env.org}-tv/resnet18-{sha[:8]}.pth", data)
    _add(weights_env, "resnet18.tv_in1k", None, url)
    with pytest.raises(IntegrityError):
        zoo.create_model("resnet18.tv_in1k", pretrained=True)
    assert not marker.exists()
    assert weights_env.cached_files() == []


def test_an_unreachable_source_while_offline_says_offline(weights_env, monkeypatch):
    _add(weights_env, "resnet18.tv_in1k", f"{weights_env.org}-timm/x", "https://example.invalid/resnet18-0123abcd.pth")
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    requests = len(weights_env.server.requests)
    with pytest.raises(OfflineError):
        fetch.fetch("resnet18.tv_in1k")
    assert len(weights_env.server.requests) == requests


def test_the_repository_manifest_gives_public_sources_to_every_torchvision_weight(monkeypatch):
    monkeypatch.delenv("ZOO_WEIGHTS_DIR", raising=False)
    import torchvision.models as tvm

    from zoo.pretrained.convert import CONVERTIBLE, TORCHVISION_TAGS

    for arch in CONVERTIBLE:
        for w in tvm.get_model_weights(arch):
            if w.name not in TORCHVISION_TAGS:
                continue
            entry = manifest.get_entry(arch, TORCHVISION_TAGS[w.name])
            assert entry.published and entry.source.repo_id == f"timm/{arch}.{TORCHVISION_TAGS[w.name]}"
            assert entry.fallbacks[0].url == w.url and manifest.hash_prefix(w.url)
            assert entry.metrics["top1"] == w.meta["_metrics"]["ImageNet-1K"]["acc@1"]
        best = "tv2_in1k" if "IMAGENET1K_V2" in tvm.get_model_weights(arch).__members__ else "tv_in1k"
        assert manifest.default_tag(arch) == best
    # timm's other weights: reached by tag, never the default, accuracy only from timm's results file.
    a1 = manifest.get_entry("resnet50", "a1_in1k")
    assert not a1.default and a1.input_size == (3, 288, 288) and a1.metrics["measured_by"].startswith("timm")
    assert json.dumps(a1.origin).count("train_input_size") == 1
