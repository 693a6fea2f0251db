"""`zoo download` and the weights part of `zoo info`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from helpers import subprocess_env

from zoo.cli import main as cli
from zoo.pretrained import fetch, manifest


@pytest.mark.slow
def test_download_fetches_verifies_and_prints_the_path(weights_env, mnist_file, server, capsys):
    weights_env.add_hub("mnist_cnn.hub", mnist_file, default=True)
    weights_env.add_hub("mnist_cnn.web", mnist_file)
    assert cli(["download", "mnist_cnn", "mnist_cnn.web"]) == 0  # an arch means its default weights
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and all("verified" in line for line in out)
    hub_path = out[0].split()[1]
    assert out[0].startswith("mnist_cnn.hub ") and Path(hub_path).read_bytes() == mnist_file.data
    # Now offline use works, without a request.
    requests = len(server.requests)
    offline = subprocess_env({"HF_HUB_OFFLINE": "1"})
    code = "import zoo; zoo.create_model('mnist_cnn.hub', pretrained=True); print('ok')"
    run = subprocess.run([sys.executable, "-c", code], env=offline, capture_output=True, text=True, timeout=120)
    assert run.stdout.strip() == "ok", run.stderr
    assert len(server.requests) == requests


def test_download_patterns_and_failures(weights_env, mnist_file, capsys):
    weights_env.add_hub("mnist_cnn.a", mnist_file)
    weights_env.add_hub("mnist_cnn.bad", mnist_file, sha256="0" * 64)  # the server's file is not the listed one
    assert cli(["download", "mnist_cnn.*"]) == 1  # one failed: the exit status says so
    captured = capsys.readouterr()
    assert captured.out.startswith("mnist_cnn.a ")
    assert "mnist_cnn.bad" in captured.err and "mnist_cnn.a" not in captured.err
    assert cli(["download", "nothing*"]) == 2
    assert "'nothing*'" in capsys.readouterr().err


def test_download_of_a_model_without_weights_is_a_clear_error(weights_env, capsys):
    assert cli(["download", "resnet20"]) == 2
    assert "resnet20" in capsys.readouterr().err


def test_download_force_fetches_again(weights_env, mnist_file, server, capsys):
    path = weights_env.add_hub("mnist_cnn.f", mnist_file) + "/resolve/"
    assert cli(["download", "mnist_cnn.f"]) == 0
    assert cli(["download", "mnist_cnn.f"]) == 0
    assert server.count("GET", path) == 1
    assert cli(["download", "--force", "mnist_cnn.f"]) == 0
    assert server.count("GET", path) == 2


def test_info_shows_the_weights_metadata(monkeypatch, capsys):
    monkeypatch.delenv("ZOO_WEIGHTS_DIR", raising=False)
    monkeypatch.delenv("ZOO_HUB_ORG", raising=False)
    assert cli(["info", "resnet50", "--img-size", "64"]) == 0
    out = capsys.readouterr().out
    weights_part = out[out.index("pretrained weights:") :]
    entry = manifest.get_entry("resnet50", "tv2_in1k")
    metrics = entry.metrics
    for text in (
        "resnet50.tv2_in1k  (default)",
        "resnet50.tv_in1k",
        "source       Hugging Face Hub timm/resnet50.tv2_in1k (model.safetensors @ main)",
        "else         https://download.pytorch.org/models/resnet50-11ad3fa6.pth (torch pickle",
        "X-Linked-Etag",
        f"status       {entry.status}",
        f"top1 {metrics['top1']:.3f}%, top5 {metrics['top5']:.3f}% (measured by torchvision)",
        f"measured by  {metrics['command']}",
        f"upstream     {entry.origin['upstream']}",
        "license      bsd-3-clause",
        "crop_pct 0.9655",  # 224 / 232
    ):
        assert text in weights_part, text


def test_info_of_a_cached_entry_says_where_it_is(weights_env, mnist_file, capsys):
    weights_env.add_hub("mnist_cnn.c", mnist_file)
    assert cli(["info", "mnist_cnn.c"]) == 0
    assert "on this host not cached" in capsys.readouterr().out
    path = fetch.fetch("mnist_cnn.c")
    assert cli(["info", "mnist_cnn.c"]) == 0
    out = capsys.readouterr().out
    assert f"cached at {path} (verified)" in out and f"sha256 {mnist_file.sha256}" in out


@pytest.mark.parametrize("name", ["resnet20", "mnist_cnn_deep"])
def test_info_of_an_arch_without_weights_has_no_weights_section(weights_env, name, capsys):
    assert cli(["info", name]) == 0  # weights_env: an empty manifest
    assert "pretrained weights:" not in capsys.readouterr().out


def test_info_with_a_stem_lists_only_the_weights_of_that_stem(monkeypatch, capsys):
    monkeypatch.delenv("ZOO_WEIGHTS_DIR", raising=False)
    assert cli(["info", "vgg11_bn", "--stem", "cifar"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines() if line.startswith("  vgg11_bn.")]
    assert "vgg11_bn.cifar10" in listed and "vgg11_bn.tv_in1k" not in listed  # not the arch's ImageNet default
    assert cli(["info", "vgg11", "--stem", "cifar"]) == 0
    assert "pretrained weights:" not in capsys.readouterr().out
