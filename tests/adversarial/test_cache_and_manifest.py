"""The weights cache and the manifest under attack: links, hostile names, cut transfers, broken and full caches."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import cli, entry_for, subprocess_env
from weights_server import COMMIT

import zoo
from zoo.errors import IntegrityError, WeightsError
from zoo.pretrained import cache, fetch, manifest


def _write_manifest(weights_env, weights: dict) -> None:
    # Written by hand, as an attacker (or a careless edit) would: update_entry would refuse these names.
    (weights_env.dir / "manifest.json").write_text(json.dumps({"schema": 1, "weights": weights}))


def _hub_entry(weights_env, mnist_file, name: str) -> dict:
    source = {"type": "hub", "repo_id": "{org}/" + name, "filename": "model.safetensors", "revision": "main"}
    return entry_for(mnist_file, source)


# ------------------------------------------------------------------------------------------ links and names


@pytest.mark.parametrize("how", ["link", "hardlink-free copy"])
def test_a_cached_file_replaced_by_a_link_to_a_users_file_is_never_written_through(
    weights_env, mnist_file, tmp_path, how
):
    weights_env.add_hub("mnist_cnn.link", mnist_file)
    cached = fetch.fetch("mnist_cnn.link")
    precious = tmp_path / "home" / "thesis.txt"
    precious.parent.mkdir()
    precious.write_bytes(b"x" * mnist_file.size)  # same size: only the hash tells them apart
    cached.unlink()
    if how == "link":
        cached.symlink_to(precious)  # the cache entry now points at the user's file
    else:
        cached.write_bytes(precious.read_bytes())
    with pytest.warns(UserWarning, match="mnist_cnn.link"):
        again = fetch.fetch("mnist_cnn.link")
    assert precious.read_bytes() == b"x" * mnist_file.size
    assert again == cached and not again.is_symlink() and again.read_bytes() == mnist_file.data


def test_a_manifest_name_cannot_place_files_outside_the_cache(weights_env, mnist_file, server, tmp_path):
    # ZOO_CACHE_DIR is tmp_path/zoo-cache: three '..' from cache/locks/mnist_cnn.x lead to tmp_path.
    name = "mnist_cnn.x/../../../outside/pwn"
    server.add_hub(f"{weights_env.org}/pwn", "model.safetensors", mnist_file.data)
    source = {"type": "hub", "repo_id": "{org}/pwn", "filename": "model.safetensors"}
    _write_manifest(weights_env, {name: entry_for(mnist_file, source)})
    with pytest.raises(ValueError) as err:
        fetch.fetch(name)
    assert name in str(err.value)
    assert not (tmp_path / "outside").exists()
    assert server.count("GET", "/pwn/") == 0


def test_bundled_and_label_paths_cannot_leave_the_weights_folder(weights_env, mnist_file, tmp_path):
    outside = tmp_path / "outside.safetensors"
    outside.write_bytes(mnist_file.data)
    for path in ("../outside.safetensors", str(outside)):
        _write_manifest(weights_env, {"mnist_cnn.b": entry_for(mnist_file, {"type": "bundled", "path": path})})
        with pytest.raises(ValueError) as err:
            fetch.fetch("mnist_cnn.b")
        assert err.value.name == "path" and err.value.value == path
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps([str(i) for i in range(10)]))
    for path in ("../labels.json", str(labels)):
        entry = entry_for(mnist_file, {"type": "bundled", "path": "x.safetensors"}, label_names=path)
        _write_manifest(weights_env, {"mnist_cnn.l": entry})
        with pytest.raises(ValueError) as err:
            manifest.label_names(manifest.get_entry("mnist_cnn", "l"))
        assert err.value.name == "label_names" and err.value.value == path


# ------------------------------------------------------------------------------------------ broken manifests


def test_a_manifest_that_is_not_json_is_named(weights_env, capsys):
    (weights_env.dir / "manifest.json").write_text('{"schema": 1, "weights": {')
    assert cli("list", "--pretrained") == 2
    err = capsys.readouterr().err
    assert str(weights_env.dir / "manifest.json") in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "change, message",
    [
        ({"source": {"type": "ftp", "url": "ftp://x/y.safetensors"}}, "'ftp'"),
        ({"source": None}, "source=None"),
        ({"sha256": None}, "sha256=None"),
    ],
)
def test_zoo_info_reports_a_bad_entry_before_printing_anything(weights_env, mnist_file, capsys, change, message):
    entry = {**entry_for(mnist_file, {"type": "bundled", "path": "x.safetensors"}), **change}
    _write_manifest(weights_env, {"mnist_cnn.bad": entry})
    assert cli("info", "mnist_cnn") == 2
    out, err = capsys.readouterr()
    assert out == ""  # no half-printed layer table
    assert err.startswith("zoo info: error: ") and message in err and "mnist_cnn.bad" in err
    assert str(weights_env.dir / "manifest.json") in err


# ------------------------------------------------------------------------------------------ the Hub


def test_a_hub_404_is_not_reported_as_a_connection_problem(weights_env, mnist_file, capsys):
    weights_env.add("mnist_cnn.gone", _hub_entry(weights_env, mnist_file, "mnist_cnn.gone"))  # nothing served
    with pytest.raises(WeightsError) as e:
        fetch.fetch("mnist_cnn.gone")
    assert "404" in str(e.value) and "connection" not in str(e.value)
    assert "model.safetensors" in str(e.value) and f"{weights_env.org}/mnist_cnn.gone" in str(e.value)


def test_no_network_is_said_once_with_every_way_to_get_the_weights(weights_env, mnist_file, monkeypatch, capsys):
    """Both sources unreachable (a closed port on loopback): each says so, the hint comes once, and torchvision's
    weights name the .pth conversion."""
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    monkeypatch.setenv("HF_ENDPOINT", closed)
    entry = _hub_entry(weights_env, mnist_file, "mnist_cnn.tv_like")
    entry["fallbacks"] = [{"type": "url", "url": f"{closed}/models/mnist_cnn-0123abcd.pth"}]
    entry["origin"] = {
        "command": "zoo convert torchvision mnist_cnn",
        "upstream": "torchvision.models.X_Weights.V1",
        "url": "https://download.example/models/mnist_cnn-0123abcd.pth",
    }
    weights_env.add("mnist_cnn.tv_like", entry)
    assert cli("download", "mnist_cnn.tv_like") != 0
    err = capsys.readouterr().err
    assert err.count("refused") == 2 and "cut off" not in err
    assert err.count("zoo download mnist_cnn.tv_like") == 1  # the ways to get the file, said once
    assert "zoo convert torchvision mnist_cnn --weights V1 --file mnist_cnn-0123abcd.pth" in err


def test_a_host_name_that_does_not_resolve_is_said_as_such(weights_env, mnist_file, monkeypatch, capsys):
    """No DNS (a machine without network): the error says the host name did not resolve, once per source, with
    the ways to get the weights once, and never that a transfer broke off."""
    import socket

    def no_dns(host, *args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)  # resolves nothing: no query leaves the machine
    monkeypatch.setenv("HF_ENDPOINT", "http://hub.example")
    entry = _hub_entry(weights_env, mnist_file, "mnist_cnn.nodns")
    entry["fallbacks"] = [{"type": "url", "url": "http://files.example/mnist_cnn-0123abcd.pth"}]
    weights_env.add("mnist_cnn.nodns", entry)
    assert cli("download", "mnist_cnn.nodns") != 0
    err = capsys.readouterr().err
    assert err.count("did not resolve") == 2 and "cut off" not in err and "Traceback" not in err
    assert err.count("zoo download mnist_cnn.nodns") == 1


def test_a_hub_transfer_cut_mid_body_is_a_clear_error(weights_env, mnist_file, capsys):
    weights_env.add_hub("mnist_cnn.cut", mnist_file, mode="cut")
    assert cli("predict", "mnist_cnn.cut", str(_sample_png())) == 2
    err = capsys.readouterr().err
    assert err.startswith("zoo predict: error: ") and "mnist_cnn.cut" in err and "Traceback" not in err
    assert weights_env.cached_files() == []


def _sample_png() -> Path:
    from zoo.predict import SAMPLES_DIR

    return next(SAMPLES_DIR.rglob("*.png"))


CHILD = """
import sys, zoo.pretrained.fetch as f
print("ready", flush=True)
print(f.fetch(sys.argv[1]), flush=True)
"""


@pytest.mark.slow
def test_concurrent_hub_downloads_share_one_transfer_and_a_killed_one_leaves_nothing(weights_env, mnist_file, server):
    repo = weights_env.add_hub("mnist_cnn.race", mnist_file)
    path = f"/{repo}/resolve/"  # GETs go to the commit "main" points to
    server.hold(path)  # the first GET stops after its first chunk
    child = [sys.executable, "-c", CHILD, "mnist_cnn.race"]
    first = subprocess.Popen(child, env=subprocess_env(), stdout=subprocess.PIPE, text=True)
    try:
        assert server.holding.wait(timeout=120), "the first download never started"
        second = subprocess.Popen(child, env=subprocess_env(), stdout=subprocess.PIPE, text=True)
        assert second.stdout.readline().strip() == "ready"
        first.kill()  # kill -9 in the middle of the transfer, holding zoo's lock
        first.wait()
    finally:
        server.release()
    out = second.communicate(timeout=120)[0].strip()
    assert second.returncode == 0
    assert Path(out).read_bytes() == mnist_file.data
    assert server.count("GET", path) == 2  # the killed transfer and the second process's one
    assert fetch.fetch("mnist_cnn.race") == Path(out)  # and a third user finds it cached
    assert server.count("GET", path) == 2
    assert weights_env.cached_files() == [Path(out)]  # the killed transfer's temporary file is gone


@pytest.mark.parametrize("force", [False, True])
def test_a_hostile_hub_etag_never_becomes_a_path(weights_env, mnist_file, server, force):
    # huggingface_hub names the blob after X-Linked-Etag: blobs/../../../../victim.txt is beside HF_HOME. zoo names
    # its file after the SHA-256 it checked, and a header that is no SHA-256 is no SHA-256 at all.
    victim = weights_env.hf_home.parent / "victim.txt"
    victim.write_text("the user's file")
    repo_id = weights_env.add_hub("mnist_cnn.etag", mnist_file)  # the manifest holds the SHA-256
    for path in list(server.etags):
        if path.startswith(f"/{repo_id}/"):
            server.etags[path] = "../../../../victim.txt"
            server.commits[path] = "../../../../pwn"
    with pytest.raises(WeightsError):  # a commit that is no commit names no file
        fetch.fetch("mnist_cnn.etag", force=force)
    for path in list(server.commits):
        if path.startswith(f"/{repo_id}/"):
            server.commits.pop(path)
    assert fetch.fetch("mnist_cnn.etag", force=force).read_bytes() == mnist_file.data
    assert victim.read_text() == "the user's file" and not (weights_env.hf_home.parent / "pwn").exists()
    assert weights_env.cached_files() == [cache.file_path(mnist_file.sha256)]
    assert weights_env.hf_files() == []


def test_a_hub_file_larger_than_the_manifest_says_is_not_read_to_the_end(weights_env, mnist_file, server):
    repo_id = weights_env.add_hub("mnist_cnn.big", mnist_file)
    big = mnist_file.data * 150
    server.add_hub(repo_id, "model.safetensors", big, sha256=mnist_file.sha256)  # the Hub claims the listed file
    for path in [p for p in server.files if p.startswith(f"/{repo_id}/")]:
        server.files[path] = (big, "cut")  # announce nothing true: the transfer alone must stop it
    with pytest.raises(IntegrityError) as err:
        fetch.fetch("mnist_cnn.big")
    assert f"{mnist_file.size:,}" in str(err.value)
    assert weights_env.cached_files() == []


def test_a_download_with_no_size_known_is_capped(weights_env, mnist_file, server, monkeypatch):
    """A server that announces no size and sends an endless body fills no disk: every download has a cap."""
    monkeypatch.setattr(fetch, "MAX_DOWNLOAD", 64 * 1024)
    data = mnist_file.data  # a third-party file: no size in the manifest
    repo = f"{weights_env.org}-timm/endless"
    server.add_hub(repo, "model.safetensors", data)
    for path in [p for p in server.etags if p.startswith(f"/{repo}/")]:
        server.etags[path] = mnist_file.sha256
    weights_env.add(
        "mnist_cnn.endless", entry_for(None, {"type": "hub", "repo_id": repo, "filename": "model.safetensors"})
    )
    monkeypatch.setattr(fetch, "hub_file_info", lambda *a: (COMMIT, mnist_file.sha256, None))  # no size announced
    with pytest.raises(IntegrityError) as err:
        fetch.fetch("mnist_cnn.endless")
    assert f"{64 * 1024:,}" in str(err.value)
    assert weights_env.cached_files() == []


# ------------------------------------------------------------------------------------------ caches


def test_a_corrupted_cache_edited_in_place_is_caught(weights_env, mnist_file, server):
    repo = weights_env.add_hub("mnist_cnn.edit", mnist_file)
    path = fetch.fetch("mnist_cnn.edit")
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size and mtime: only the content changed
    with pytest.warns(UserWarning, match=mnist_file.sha256):
        assert fetch.fetch("mnist_cnn.edit").read_bytes() == mnist_file.data
    assert server.count("GET", f"/{repo}/resolve/") == 2


def test_a_read_only_cache_serves_what_it_holds_and_says_why_it_cannot_fetch(
    weights_env, mnist_file, readonly_fs, monkeypatch, capsys
):
    root, make_readonly = readonly_fs
    monkeypatch.setenv("ZOO_CACHE_DIR", str(root))
    from safetensors.torch import save

    weights_env.add_hub("mnist_cnn.have", mnist_file)
    torch.manual_seed(5)
    other = save(zoo.create_model("mnist_cnn").state_dict())  # another file: not in the cache yet
    weights_env.server.add_hub(f"{weights_env.org}/mnist_cnn.new", "model.safetensors", other)
    source = {"type": "hub", "repo_id": "{org}/mnist_cnn.new", "filename": "model.safetensors"}
    weights_env.add("mnist_cnn.new", entry_for(None, source, sha256=hashlib.sha256(other).hexdigest(), size=len(other)))
    have = fetch.fetch("mnist_cnn.have")
    make_readonly()
    assert fetch.fetch("mnist_cnn.have") == have
    assert cli("download", "mnist_cnn.new") == 1
    err = capsys.readouterr().err
    assert str(root) in err and "ZOO_CACHE_DIR" in err and "Traceback" not in err


def test_a_full_cache_leaves_no_partial_file(weights_env, mnist_file, small_fs, monkeypatch):
    monkeypatch.setenv("ZOO_CACHE_DIR", str(small_fs))
    weights_env.add_hub("mnist_cnn.big", mnist_file)
    (small_fs / "filler").write_bytes(b"\0" * (400 * 1024))  # leaves less room than the 200 KB file needs
    with pytest.raises(WeightsError) as e:
        fetch.fetch("mnist_cnn.big")
    assert str(small_fs) in str(e.value) and "ZOO_CACHE_DIR" in e.value.hint
    assert [p.name for p in (small_fs / "files").iterdir()] == []
    (small_fs / "filler").unlink()
    assert fetch.fetch("mnist_cnn.big").read_bytes() == mnist_file.data


def test_files_zoo_writes_honour_the_umask(tmp_path, mnist_file):
    from zoo.pretrained.files import save_weights
    from zoo.utils import write_json

    old = os.umask(0o027)
    try:
        saved = save_weights(mnist_file.model, tmp_path / "w.safetensors")
        written = write_json({"a": 1}, tmp_path / "x.json")
    finally:
        os.umask(old)
    assert oct(saved.path.stat().st_mode & 0o777) == oct(0o640)
    assert oct(written.stat().st_mode & 0o777) == oct(0o640)


def test_integrity_error_names_the_file(weights_env, mnist_file):
    weights_env.add_bundled("mnist_cnn.bundled", mnist_file)
    path = weights_env.dir / "mnist_cnn.bundled.safetensors"
    path.write_bytes(mnist_file.data[:-1] + b"\0")
    with pytest.raises(IntegrityError, match=str(path)):
        fetch.fetch("mnist_cnn.bundled")


PIN_WRITER = """
import sys
from zoo.pretrained.cache import write_pin
print("ready", flush=True)
sys.stdin.readline()  # all writers start together
for i in range(20):
    record = {"commit": "a" * 40, "sha256": "ab" * 32, "size": i}
    write_pin("mnist_cnn.pinned", f"hub:{sys.argv[1]}/{i}.safetensors", record)
"""


@pytest.mark.slow
def test_pins_written_by_processes_at_once_are_all_kept(weights_env):
    from zoo.pretrained.cache import read_pin

    pipes = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "text": True}
    writers = [
        subprocess.Popen([sys.executable, "-c", PIN_WRITER, f"w{n}"], env=subprocess_env(), **pipes) for n in range(4)
    ]
    for w in writers:
        assert w.stdout.readline().strip() == "ready"
    for w in writers:
        w.stdin.write("go\n")
        w.stdin.flush()
    for w in writers:
        w.communicate(timeout=120)
        assert w.returncode == 0
    keys = [f"hub:w{n}/{i}.safetensors" for n in range(4) for i in range(20)]
    lost = [k for k in keys if read_pin("mnist_cnn.pinned", k) is None]
    assert not lost, f"{len(lost)} of 80 pins lost"


@pytest.mark.parametrize("header", ["honest", "etag", "commit"])
def test_zoo_convert_timm_fetches_timms_file_through_zoos_checks(weights_env, server, tmp_path, header):
    """Without --file, `zoo convert timm NAME` downloads timm's Hub file itself, as zoo downloads weights: a
    hostile X-Linked-Etag or X-Repo-Commit never names a file (huggingface_hub's download would write it)."""
    import timm
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(3)
    model = timm.create_model("resnet18").eval()
    save_file(model.state_dict(), tmp_path / "model.safetensors")
    victim = weights_env.hf_home.parent / "victim.txt"
    victim.write_text("the user's file")
    repo = "timm/resnet18.a1_in1k"
    server.add_hub(repo, "model.safetensors", (tmp_path / "model.safetensors").read_bytes())
    for path in [p for p in server.etags if p.startswith(f"/{repo}/")]:
        if header == "etag":
            server.etags[path] = "../../../../victim.txt"
        elif header == "commit":
            server.commits[path] = "../../../../pwn"
    code = cli("convert", "timm", "resnet18.a1_in1k", "--out", tmp_path / "out.safetensors")
    assert victim.read_text() == "the user's file" and not (weights_env.hf_home.parent / "pwn").exists()
    if header != "honest":
        assert code == 2 and not (tmp_path / "out.safetensors").exists()
        return
    assert code == 0
    loaded = zoo.create_model("resnet18", checkpoint_path=tmp_path / "out.safetensors").eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=1e-5, atol=1e-6)  # the same tensors, any kernel
    assert weights_env.hf_files() == []
