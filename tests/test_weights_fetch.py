"""Getting weights: Hub and torchvision-URL downloads from a loopback server, integrity, caching, locking, offline."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import entry_for, subprocess_env
from weights_server import COMMIT

import zoo
from zoo.errors import IntegrityError, NotPublishedError, OfflineError, WeightsError
from zoo.pretrained import cache, fetch


def _same_outputs(a: torch.nn.Module, b: torch.nn.Module, shape=(2, 1, 28, 28)) -> bool:
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return torch.equal(a.eval()(x), b.eval()(x))


def _pth_entry(env, name: str, file, data: bytes | None = None, mode: str = "ok") -> str:
    """``file``'s tensors as a torchvision-style ``.pth`` (its name carries its SHA-256 prefix), served and listed
    as the only source of the third-party entry ``name``; returns the URL."""
    if data is None:
        buffer = io.BytesIO()
        torch.save(file.model.state_dict(), buffer)
        data = buffer.getvalue()
    sha = hashlib.sha256(data).hexdigest()
    url = env.server.add(f"/{env.org}-tv/{name}-{sha[:8]}.pth", data, mode)
    env.add(name, entry_for(None, {"type": "url", "url": url}))
    return url


def test_hub_download_verifies_caches_by_content_and_loads(weights_env, mnist_file, server):
    repo_id = weights_env.add_hub("mnist_cnn.hub", mnist_file, default=True)
    model = zoo.create_model("mnist_cnn", pretrained=True)  # the default tag
    assert _same_outputs(model, mnist_file.model)
    assert model.pretrained_cfg["hf_hub_id"] == repo_id and model.pretrained_cfg["tag"] == "hub"
    assert server.count("GET", f"/{repo_id}/resolve/{COMMIT}/") == 1  # fetched at the commit "main" pointed to
    assert weights_env.cached_files() == [cache.file_path(mnist_file.sha256)]  # named by its SHA-256
    assert cache.file_path(mnist_file.sha256).read_bytes() == mnist_file.data
    assert weights_env.hf_files() == []  # huggingface_hub's cache is read, never written
    requests = len(server.requests)
    zoo.create_model("mnist_cnn.hub", pretrained=True)  # warm: no request at all
    assert len(server.requests) == requests


def test_a_torchvision_url_is_checked_against_its_name_converted_once_and_pinned(weights_env, mnist_file, server):
    url = _pth_entry(weights_env, "mnist_cnn.tv", mnist_file)
    model = zoo.create_model("mnist_cnn.tv", pretrained=True)
    assert _same_outputs(model, mnist_file.model) and model.pretrained_cfg["url"] == url
    pin = cache.read_pin("mnist_cnn.tv", f"url:{url}")
    assert pin["sha256"].startswith(url.rsplit("-", 1)[1][:8])
    assert weights_env.cached_files() == [cache.file_path(pin["converted_sha256"])]  # the .pth is not kept
    requests = len(server.requests)
    assert fetch.fetch("mnist_cnn.tv") == cache.file_path(pin["converted_sha256"])
    assert len(server.requests) == requests


@pytest.mark.parametrize("kind", ["pth", "hub"])
def test_sha_mismatch_is_an_error_and_nothing_is_cached(weights_env, mnist_file, kind):
    other = bytearray(mnist_file.data)
    other[-100] ^= 0xFF  # same size, different content
    if kind == "pth":
        good = io.BytesIO()
        torch.save(mnist_file.model.state_dict(), good)
        sha = hashlib.sha256(good.getvalue()).hexdigest()
        url = weights_env.server.add(f"/{weights_env.org}-tv/bad-{sha[:8]}.pth", bytes(other))
        weights_env.add("mnist_cnn.bad", entry_for(None, {"type": "url", "url": url}))
        expected = sha[:8]
    else:
        weights_env.add_hub("mnist_cnn.bad", mnist_file, data=bytes(other))
        expected = mnist_file.sha256
    with pytest.raises(IntegrityError) as err:
        zoo.create_model("mnist_cnn.bad", pretrained=True)
    assert expected in str(err.value) and hashlib.sha256(bytes(other)).hexdigest() in str(err.value)
    assert weights_env.cached_files() == []  # no file, no temporary file


@pytest.mark.parametrize("mode", ["cut", "short"])
@pytest.mark.parametrize("kind", ["pth", "hub"])
def test_a_truncated_transfer_is_detected_and_not_cached(weights_env, mnist_file, kind, mode):
    if kind == "pth":
        _pth_entry(weights_env, "mnist_cnn.trunc", mnist_file, mode=mode)
    else:
        weights_env.add_hub("mnist_cnn.trunc", mnist_file, mode=mode)
    with pytest.raises(IntegrityError):
        fetch.fetch("mnist_cnn.trunc")
    assert weights_env.cached_files() == []


def _corrupt(path, keep_mtime: bool = False) -> None:
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    os.chmod(path, 0o644)
    path.write_bytes(bytes(data))
    if keep_mtime:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


@pytest.mark.parametrize("kind", ["pth", "hub"])
def test_corrupted_cache_is_detected_reported_and_fetched_again(weights_env, mnist_file, server, kind):
    if kind == "pth":
        path_part = _pth_entry(weights_env, "mnist_cnn.c", mnist_file).split(server.endpoint)[1]
    else:
        path_part = weights_env.add_hub("mnist_cnn.c", mnist_file) + "/resolve"
    first = fetch.fetch("mnist_cnn.c")
    _corrupt(first, keep_mtime=True)  # same size and mtime: only the content (and ctime) changes
    with pytest.warns(UserWarning, match=str(first)):
        again = fetch.fetch("mnist_cnn.c")
    assert again == first and server.count("GET", path_part) == 2
    assert cache.check_file(again, again.name[:64]) is None


def test_verified_marker_avoids_rehashing_until_the_file_changes(weights_env, mnist_file, monkeypatch):
    weights_env.add_hub("mnist_cnn.m", mnist_file)
    path = fetch.fetch("mnist_cnn.m")  # hashed while streaming, marked verified
    calls = []
    real = cache.sha256_file
    monkeypatch.setattr(cache, "sha256_file", lambda p: calls.append(p) or real(p))
    fetch.fetch("mnist_cnn.m")
    assert calls == []
    os.utime(path)  # touched: verified again, once
    fetch.fetch("mnist_cnn.m")
    fetch.fetch("mnist_cnn.m")
    assert len(calls) == 1


CHILD = """
import sys, zoo.pretrained.fetch as f
print(f.fetch(sys.argv[1]))
"""


@pytest.mark.slow
def test_two_processes_fetching_at_once_download_once_and_agree(weights_env, mnist_file, server, monkeypatch):
    repo = weights_env.add_hub("mnist_cnn.race", mnist_file)
    monkeypatch.setattr(server, "delay", 0.25)  # ~1 s per download, so the two overlap
    env = subprocess_env()
    procs = [
        subprocess.Popen([sys.executable, "-c", CHILD, "mnist_cnn.race"], env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0, 0] and outs[0] == outs[1]
    assert server.count("GET", f"/{repo}/resolve/") == 1  # the second waited on the lock
    assert weights_env.cached_files() == [cache.file_path(mnist_file.sha256)]


@pytest.mark.slow
def test_interrupted_download_leaves_nothing_that_passes_as_complete(weights_env, mnist_file, server):
    repo = weights_env.add_hub("mnist_cnn.kill", mnist_file)
    server.hold(f"/{repo}/resolve/{COMMIT}")  # the transfer stops after its first chunk
    proc = subprocess.Popen([sys.executable, "-c", CHILD, "mnist_cnn.kill"], env=subprocess_env())
    try:
        assert server.holding.wait(timeout=120), "the child never started its download"
        deadline = time.monotonic() + 60
        while not weights_env.cached_files() and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.kill()
        proc.wait()
    finally:
        server.release()
    left = weights_env.cached_files()
    assert left and all(p.name.startswith(".") and p.name.endswith(".part") for p in left)  # only a temporary file
    assert fetch.fetch("mnist_cnn.kill").read_bytes() == mnist_file.data
    assert weights_env.cached_files() == [cache.file_path(mnist_file.sha256)]  # the dead process's file is gone


@pytest.mark.parametrize("flag", ["HF_HUB_OFFLINE", "ZOO_OFFLINE"])
@pytest.mark.parametrize("kind", ["pth", "hub"])
def test_offline_without_cache_is_one_clear_error(weights_env, mnist_file, server, monkeypatch, flag, kind):
    where = _pth_entry(weights_env, "mnist_cnn.off", mnist_file) if kind == "pth" else None
    if kind == "hub":
        where = weights_env.add_hub("mnist_cnn.off", mnist_file)
    monkeypatch.setenv(flag, "1")
    requests = len(server.requests)
    with pytest.raises(OfflineError) as err:
        zoo.create_model("mnist_cnn.off", pretrained=True)
    for part in ("mnist_cnn.off", where, flag, "zoo download mnist_cnn.off", "checkpoint_path"):
        assert part in str(err.value)
    assert len(server.requests) == requests


@pytest.mark.parametrize("kind", ["pth", "hub"])
def test_offline_uses_the_cache(weights_env, mnist_file, server, monkeypatch, kind):
    if kind == "pth":
        _pth_entry(weights_env, "mnist_cnn.warm", mnist_file)
    else:
        weights_env.add_hub("mnist_cnn.warm", mnist_file)
    fetch.fetch("mnist_cnn.warm")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    requests = len(server.requests)
    assert _same_outputs(zoo.create_model("mnist_cnn.warm", pretrained=True), mnist_file.model)
    assert len(server.requests) == requests


def test_offline_with_a_corrupted_cache_says_so(weights_env, mnist_file, monkeypatch):
    weights_env.add_hub("mnist_cnn.cc", mnist_file)
    path = fetch.fetch("mnist_cnn.cc")
    _corrupt(path)
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    with pytest.raises(IntegrityError) as err:
        fetch.fetch("mnist_cnn.cc")
    assert str(path) in str(err.value)


def test_bundled_weights_work_offline_and_are_verified(weights_env, mnist_file, monkeypatch):
    path = weights_env.add_bundled("mnist_cnn.bundled", mnist_file)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    assert _same_outputs(zoo.create_model("mnist_cnn.bundled", pretrained=True), mnist_file.model)
    _corrupt(path)
    with pytest.raises(IntegrityError) as err:
        zoo.create_model("mnist_cnn.bundled", pretrained=True)
    assert str(path) in str(err.value)


def test_unpublished_entry_says_what_works_today(weights_env, server):
    from zoo.pretrained.convert import torchvision_entry

    tag, entry = torchvision_entry("resnet18", "IMAGENET1K_V1")  # listed as tools/gen_manifest.py lists it
    name = f"resnet18.{tag}"
    weights_env.add(name, entry)
    requests = len(server.requests)
    with pytest.raises(NotPublishedError) as err:
        zoo.create_model(name, pretrained=True)
    message = str(err.value)
    assert name in message and f"{weights_env.org}/{name}" in message  # ZOO_HUB_ORG fills in {org}
    assert "zoo convert torchvision resnet18 --weights IMAGENET1K_V1" in message and "checkpoint_path" in message
    assert len(server.requests) == requests  # nothing was asked of the Hub


def test_an_unpublished_trained_entry_offers_no_conversion(weights_env):
    """A training command in `origin` converts nothing: the hint names what loads today, not `zoo train ...`."""
    command = "zoo train mnist_cnn --dataset mnist --data-dir DATA --output runs/x"
    source = {"type": "hub", "repo_id": "{org}/mnist_cnn.t", "filename": "model.safetensors"}
    weights_env.add("mnist_cnn.t", entry_for(None, source, status="unpublished", origin={"command": command}))
    with pytest.raises(NotPublishedError) as err:
        zoo.create_model("mnist_cnn.t", pretrained=True)
    assert "zoo train" not in err.value.hint and "converted" not in err.value.hint
    assert "checkpoint_path" in err.value.hint and "local-dir:" in err.value.hint


def test_server_errors_are_reported_with_their_status(weights_env, mnist_file):
    weights_env.add(
        "mnist_cnn.gone",
        entry_for(mnist_file, {"type": "hub", "repo_id": "{org}/absent", "filename": "model.safetensors"}),
    )
    with pytest.raises(WeightsError) as err:
        fetch.fetch("mnist_cnn.gone")
    assert "404" in str(err.value)


def test_a_file_huggingface_hub_cached_is_reused_when_it_hashes_right(weights_env, mnist_file, server, monkeypatch):
    """huggingface_hub's cache (timm's downloads) is read by its layout, without importing it, and never trusted
    blindly: offline and never pinned, a file serves if it hashes to its blob's name, then it is pinned."""
    from huggingface_hub import hf_hub_download

    repo = f"{weights_env.org}-timm/reuse"
    server.add_hub(repo, "model.safetensors", mnist_file.data)
    weights_env.add(
        "mnist_cnn.reuse", entry_for(None, {"type": "hub", "repo_id": repo, "filename": "model.safetensors"})
    )
    theirs = Path(hf_hub_download(repo, "model.safetensors", cache_dir=cache.hf_hub_cache(), endpoint=server.endpoint))
    assert cache.hub_cached_file(repo, "model.safetensors", "main") == theirs
    assert cache.hub_cached_file(repo, "model.safetensors", COMMIT) == theirs
    assert cache.hub_cached_file(repo, "model.safetensors", "dev") is None
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert fetch.fetch("mnist_cnn.reuse") == theirs
    assert cache.read_pin("mnist_cnn.reuse", f"hub:{repo}/model.safetensors")["sha256"] == mnist_file.sha256
    _corrupt(theirs.resolve())
    with pytest.raises(OfflineError):  # a file that no longer hashes to its pin is not used
        fetch.fetch("mnist_cnn.reuse")
    assert weights_env.cached_files() == []
