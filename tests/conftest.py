"""The fixtures every test may use: isolated caches, the real datasets beside the checkout, a loopback Hub server,
small real weights files and a private weights environment (helpers.py holds the plain helpers)."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# No test may send traffic beyond 127.0.0.1: huggingface_hub would otherwise report telemetry to the
# endpoint it saw at import. Set here, before any test imports it, and inherited by subprocesses.
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["DO_NOT_TRACK"] = "1"

# Under pytest-xdist (`make test` runs two workers on this project's 2-core machines) each worker and the
# processes it starts get one torch thread, so the two workers share the cores instead of fighting over them.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)

import torch  # noqa: E402 - after the thread setting
from helpers import ROOT, SHARED_DATA, WeightsEnv, WeightsFile, saved_file  # noqa: E402
from weights_server import WeightsServer  # noqa: E402

_counter = itertools.count()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real MNIST/Fashion-MNIST folder, or skip the test when this machine has none."""
    if not (SHARED_DATA / "MNIST" / "raw").is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (set ZOO_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session", autouse=True)
def _session_caches(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The same for session- and module-wide fixtures (a finished run, a weights file), made before any test's
    own setting applies."""
    cache = tmp_path_factory.getbasetemp() / "caches"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ZOO_CACHE_DIR", str(cache / "zoo"))
        patch.setenv("HF_HOME", str(cache / "hf"))
        patch.setenv("TORCH_HOME", str(cache / "torch"))
        yield


@pytest.fixture(autouse=True)
def _isolated_caches(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep every test's weight and hub caches out of the user's home."""
    cache = tmp_path_factory.getbasetemp() / "caches"
    monkeypatch.setenv("ZOO_CACHE_DIR", str(cache / "zoo"))
    monkeypatch.setenv("HF_HOME", str(cache / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(cache / "torch"))


@pytest.fixture(scope="session", autouse=True)
def _repository_weights_untouched():
    """No test may write into the checkout's weights/ folder: tests publish into manifests of their own."""

    def snapshot() -> dict[str, tuple[int, int]]:
        return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in (ROOT / "weights").iterdir()}

    before = snapshot()
    yield
    after = snapshot()
    changed = sorted(n for n in before.keys() | after.keys() if before.get(n) != after.get(n))
    assert not changed, f"the test session changed {ROOT / 'weights'}: {changed} (restore with git checkout weights/)"


@pytest.fixture(scope="session", name="server")
def server_fixture():
    """One loopback server for the session; each test serves its files under its own paths."""
    with WeightsServer() as s:
        yield s


@pytest.fixture(scope="session", name="mnist_file")
def mnist_file_fixture(tmp_path_factory: pytest.TempPathFactory) -> WeightsFile:
    """mnist_cnn weights (200 KB): small enough for every download test."""
    import zoo

    torch.manual_seed(0)
    return saved_file(zoo.create_model("mnist_cnn"), tmp_path_factory.mktemp("mnist") / "mnist_cnn.safetensors")


@pytest.fixture(scope="session", name="resnet18_file")
def resnet18_file_fixture(tmp_path_factory: pytest.TempPathFactory) -> WeightsFile:
    """torchvision's resnet18, randomly initialised (BN statistics perturbed so that they matter)."""
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet18()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
    return saved_file(model, tmp_path_factory.mktemp("resnet18") / "resnet18.safetensors")


@pytest.fixture(name="weights_env")
def weights_env_fixture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: WeightsServer) -> WeightsEnv:
    """Point zoo at an empty manifest and fresh caches, and the Hub at the loopback server."""
    env = WeightsEnv(tmp_path, server, org=f"org{next(_counter)}")
    env.dir.mkdir()
    shutil.copyfile(ROOT / "weights" / "imagenet_classes.json", env.dir / "imagenet_classes.json")
    (env.dir / "manifest.json").write_text(json.dumps({"schema": 1, "hub_org": "zoo-models", "weights": {}}))
    monkeypatch.setenv("ZOO_WEIGHTS_DIR", str(env.dir))
    monkeypatch.setenv("ZOO_CACHE_DIR", str(env.cache))
    monkeypatch.setenv("HF_HOME", str(env.hf_home))
    monkeypatch.setenv("ZOO_HUB_ORG", env.org)
    monkeypatch.setenv("HF_ENDPOINT", server.endpoint)
    # No request may leave 127.0.0.1: huggingface_hub's telemetry would go to its import-time endpoint.
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("ZOO_DISABLE_PROGRESS_BARS", "1")
    for var in ("HF_HUB_OFFLINE", "ZOO_OFFLINE", "HF_HUB_CACHE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    if "huggingface_hub.constants" in sys.modules:
        monkeypatch.setattr(sys.modules["huggingface_hub.constants"], "HF_HUB_DISABLE_TELEMETRY", True)
    return env
