"""Getting weights: URL and Hub downloads from a loopback server, integrity, caching, locking, offline."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from weights_fixtures import mnist_file_fixture, server_fixture, subprocess_env, weights_env_fixture  # noqa: F401
from weights_server import COMMIT

import zoo
from zoo.errors import IntegrityError, NotPublishedError, OfflineError, WeightsError
from zoo.pretrained import cache, fetch, manifest
from zoo.pretrained.manifest import Source


def _entry(name: str) -> manifest.WeightsEntry:
    return manifest.get_entry(*name.split(".", 1))


def _same_outputs(a: torch.nn.Module, b: torch.nn.Module, shape=(2, 1, 28, 28)) -> bool:
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return torch.equal(a.eval()(x), b.eval()(x))


def test_url_download_verifies_caches_and_loads(weights_env, mnist_file, server):
    url = weights_env.add_url("mnist_cnn.web", mnist_file, default=True)
    model = zoo.create_model("mnist_cnn", pretrained=True)  # the default tag
    assert _same_outputs(model, mnist_file.model)
    assert model.pretrained_cfg["tag"] == "web" and model.pretrained_cfg["url"] == url
    path = cache.url_cache_path("mnist_cnn.web", _entry("mnist_cnn.web"))
    assert path.read_bytes() == mnist_file.data
    # Second use: from the cache, no request.
    gets = server.count("GET", url.split(server.endpoint)[1])
    zoo.create_model("mnist_cnn.web", pretrained=True)
    assert server.count("GET", url.split(server.endpoint)[1]) == gets == 1


def test_hub_download_through_hf_endpoint(weights_env, mnist_file, server):
    repo_id = weights_env.add_hub("mnist_cnn.hub", mnist_file)
    model = zoo.create_model("mnist_cnn.hub", pretrained=True)
    assert _same_outputs(model, mnist_file.model)
    assert model.pretrained_cfg["hf_hub_id"] == repo_id  # {org} filled in from ZOO_HUB_ORG
    assert server.count("GET", f"/{repo_id}/resolve/") == 1  # fetched at the commit "main" pointed to
    cached = cache.hub_cached_file(manifest.resolve_source(_entry("mnist_cnn.hub")))
    assert cached is not None and str(cached).startswith(str(weights_env.hf_home))
    assert cached.read_bytes() == mnist_file.data
    # Warm cache: found without asking the server.
    requests = len(server.requests)
    zoo.create_model("mnist_cnn.hub", pretrained=True)
    assert len(server.requests) == requests


@pytest.mark.parametrize("kind", ["url", "hub"])
def test_sha_mismatch_is_an_error_and_nothing_is_cached(weights_env, mnist_file, kind):
    other = bytearray(mnist_file.data)
    other[-100] ^= 0xFF  # same size, different content
    if kind == "url":
        url = weights_env.server.add(f"{weights_env.prefix}/bad.safetensors", bytes(other))
        weights_env.add("mnist_cnn.bad", {**_url_entry(mnist_file), "source": {"type": "url", "url": url}})
    else:
        weights_env.add_hub("mnist_cnn.bad", mnist_file, data=bytes(other))
    with pytest.raises(IntegrityError, match="SHA-256") as err:
        zoo.create_model("mnist_cnn.bad", pretrained=True)
    assert mnist_file.sha256 in str(err.value)
    url_cache = weights_env.cache / "weights"
    assert not url_cache.exists() or list(url_cache.iterdir()) == []  # no file, no temporary file
    assert weights_env.hub_files() == []


def _url_entry(file):
    from weights_fixtures import entry_for

    return entry_for(file, {"type": "url", "url": "https://example.invalid/x.safetensors"})


@pytest.mark.parametrize("mode", ["cut", "short"])
def test_truncated_url_transfer_is_detected_and_not_cached(weights_env, mnist_file, mode):
    weights_env.add_url("mnist_cnn.trunc", mnist_file, mode=mode)
    with pytest.raises(IntegrityError, match="cut off|bytes"):
        fetch.fetch("mnist_cnn.trunc")
    folder = weights_env.cache / "weights"
    assert not folder.exists() or list(folder.iterdir()) == []  # no partial file, no temp file


def test_truncated_hub_file_is_detected_and_dropped_from_the_hub_cache(weights_env, mnist_file):
    weights_env.add_hub("mnist_cnn.trunc", mnist_file, mode="short")
    with pytest.raises(IntegrityError, match="bytes instead of"):
        fetch.fetch("mnist_cnn.trunc")
    assert weights_env.hub_files() == []


def _corrupt(path, keep_mtime: bool = False) -> None:
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    os.chmod(path, 0o644)
    path.write_bytes(bytes(data))
    if keep_mtime:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


@pytest.mark.parametrize("kind", ["url", "hub"])
def test_corrupted_cache_is_detected_reported_and_fetched_again(weights_env, mnist_file, server, kind):
    if kind == "url":
        url = weights_env.add_url("mnist_cnn.c", mnist_file)
        path_part = url.split(server.endpoint)[1]
    else:
        path_part = weights_env.add_hub("mnist_cnn.c", mnist_file) + "/resolve"
    first = fetch.fetch("mnist_cnn.c")
    # Same size and mtime: only the content (and ctime, which user space cannot set) changes.
    _corrupt(first.resolve(), keep_mtime=True)
    with pytest.warns(UserWarning, match="corrupted.*downloading it again"):
        again = fetch.fetch("mnist_cnn.c")
    assert again.read_bytes() == mnist_file.data
    assert server.count("GET", path_part) == 2


def test_verified_marker_avoids_rehashing_until_the_file_changes(weights_env, mnist_file, monkeypatch):
    weights_env.add_url("mnist_cnn.m", mnist_file)
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


def test_two_processes_fetching_at_once_download_once_and_agree(weights_env, mnist_file, server, monkeypatch):
    url = weights_env.add_url("mnist_cnn.race", mnist_file)
    monkeypatch.setattr(server, "delay", 0.25)  # ~1 s per download, so the two overlap
    env = subprocess_env()
    procs = [
        subprocess.Popen([sys.executable, "-c", CHILD, "mnist_cnn.race"], env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert outs[0] == outs[1]
    assert server.count("GET", url.split(server.endpoint)[1]) == 1  # the second waited on the lock
    final = cache.url_cache_path("mnist_cnn.race", _entry("mnist_cnn.race"))
    assert final.read_bytes() == mnist_file.data
    assert sorted(p.name for p in final.parent.iterdir()) == [final.name]


def test_interrupted_download_leaves_nothing_that_passes_as_complete(weights_env, mnist_file, server):
    url = weights_env.add_url("mnist_cnn.kill", mnist_file)
    final = cache.url_cache_path("mnist_cnn.kill", _entry("mnist_cnn.kill"))
    server.hold(url.split(server.endpoint)[1])  # the transfer stops after its first chunk
    proc = subprocess.Popen([sys.executable, "-c", CHILD, "mnist_cnn.kill"], env=subprocess_env())
    try:
        assert server.holding.wait(timeout=120), "the child never started its download"
        deadline = time.monotonic() + 60  # the child has opened its temporary file
        while not any(final.parent.glob(".*.part")) and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.kill()
        proc.wait()
    finally:
        server.release()
    assert not final.exists()
    assert [p.name for p in final.parent.glob(".*.part")]  # the killed download's temporary file
    assert fetch.fetch("mnist_cnn.kill").read_bytes() == mnist_file.data
    assert list(final.parent.glob(".*.part")) == []  # stale temporary files are cleaned up under the lock


@pytest.mark.parametrize("flag", ["HF_HUB_OFFLINE", "ZOO_OFFLINE"])
@pytest.mark.parametrize("kind", ["url", "hub"])
def test_offline_without_cache_is_one_clear_error(weights_env, mnist_file, server, monkeypatch, flag, kind):
    if kind == "url":
        where = weights_env.add_url("mnist_cnn.off", mnist_file)
    else:
        where = weights_env.add_hub("mnist_cnn.off", mnist_file)
    monkeypatch.setenv(flag, "1")
    requests = len(server.requests)
    with pytest.raises(OfflineError) as err:
        zoo.create_model("mnist_cnn.off", pretrained=True)
    message = str(err.value)
    for part in ("mnist_cnn.off", where, f"{flag}=1", "zoo download mnist_cnn.off", "checkpoint_path"):
        assert part in message
    assert len(server.requests) == requests


@pytest.mark.parametrize("kind", ["url", "hub"])
def test_offline_uses_the_cache(weights_env, mnist_file, server, monkeypatch, kind):
    (weights_env.add_url if kind == "url" else weights_env.add_hub)("mnist_cnn.warm", mnist_file)
    fetch.fetch("mnist_cnn.warm")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    requests = len(server.requests)
    assert _same_outputs(zoo.create_model("mnist_cnn.warm", pretrained=True), mnist_file.model)
    assert len(server.requests) == requests


def test_offline_with_a_corrupted_cache_says_so(weights_env, mnist_file, monkeypatch):
    weights_env.add_url("mnist_cnn.cc", mnist_file)
    _corrupt(fetch.fetch("mnist_cnn.cc"))
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    with pytest.raises(IntegrityError, match="corrupted.*offline mode is on"):
        fetch.fetch("mnist_cnn.cc")


def test_bundled_weights_work_offline_and_are_verified(weights_env, mnist_file, monkeypatch):
    path = weights_env.add_bundled("mnist_cnn.bundled", mnist_file)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    assert _same_outputs(zoo.create_model("mnist_cnn.bundled", pretrained=True), mnist_file.model)
    _corrupt(path)
    with pytest.raises(IntegrityError, match="bundled file.*git checkout"):
        zoo.create_model("mnist_cnn.bundled", pretrained=True)


def test_unpublished_entry_says_how_to_convert_it(weights_env, server):
    from zoo.pretrained.convert import torchvision_entry

    tag, entry = torchvision_entry("resnet18", "IMAGENET1K_V1")  # listed as tools/gen_manifest.py lists it
    name = f"resnet18.{tag}"
    weights_env.add(name, entry)
    requests = len(server.requests)
    with pytest.raises(NotPublishedError) as err:
        zoo.create_model(name, pretrained=True)
    message = str(err.value)
    assert name in message and "not been published" in message
    assert "zoo convert torchvision resnet18 --weights IMAGENET1K_V1" in message
    assert f"{weights_env.org}/{name}" in message  # ZOO_HUB_ORG fills in {org}
    assert len(server.requests) == requests  # nothing was asked of the Hub


def test_server_errors_are_reported_with_the_source(weights_env, mnist_file):
    entry = _url_entry(mnist_file)
    entry["source"] = {"type": "url", "url": weights_env.server.endpoint + "/missing/x.safetensors"}
    weights_env.add("mnist_cnn.gone", entry)
    with pytest.raises(WeightsError, match="HTTP 404"):
        fetch.fetch("mnist_cnn.gone")


def test_hub_cache_lookup_agrees_with_huggingface_hub(weights_env, mnist_file, server):
    """hub_cached_file reads huggingface_hub's cache by hand; it must find what try_to_load_from_cache finds."""
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    repo, other = f"{weights_env.org}/agree", "fedcba9876543210fedcba9876543210fedcba98"
    newer = mnist_file.data[:-1] + bytes([mnist_file.data[-1] ^ 1])
    server.add_hub(repo, "model.safetensors", mnist_file.data)  # branch main -> COMMIT
    server.add_hub(repo, "model.safetensors", newer, revision="v2", commit=other)  # branch v2 -> other
    hub_cache = cache.hf_hub_cache()
    for revision in ("main", "v2"):  # a real cache, written by huggingface_hub itself
        hf_hub_download(repo, "model.safetensors", revision=revision, cache_dir=hub_cache, endpoint=server.endpoint)
    found = {}
    for revision in ("main", "v2", COMMIT, other, "dev", "0" * 40):
        for filename in ("model.safetensors", "other.safetensors"):
            source = Source(type="hub", repo_id=repo, filename=filename, revision=revision)
            theirs = try_to_load_from_cache(repo, filename, cache_dir=hub_cache, revision=revision)
            expected = Path(theirs) if isinstance(theirs, str) else None
            assert cache.hub_cached_file(source) == expected, (revision, filename)
            found[revision, filename] = expected
    assert found["main", "model.safetensors"].read_bytes() == mnist_file.data  # branch -> its commit's snapshot
    assert found["v2", "model.safetensors"].read_bytes() == newer
    assert found[COMMIT, "model.safetensors"] == found["main", "model.safetensors"]  # a commit hash directly
    assert found[other, "model.safetensors"] == found["v2", "model.safetensors"]
    assert found["dev", "model.safetensors"] is None and found["main", "other.safetensors"] is None
