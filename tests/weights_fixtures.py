"""Fixtures for the weights tests: a private manifest folder and caches per test, a loopback server, and
small real weights files (mnist_cnn's, and torchvision's randomly initialised resnet18 as the reference).

A test module imports the fixtures it uses under their function names (the fixture names are
``server``, ``mnist_file``, ``resnet18_file`` and ``weights_env``), e.g.
``from weights_fixtures import weights_env_fixture  # noqa: F401``.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from weights_server import WeightsServer

ROOT = Path(__file__).resolve().parent.parent
_counter = itertools.count()


@dataclass
class WeightsFile:
    """A real safetensors file on disk, its bytes and the model it was saved from."""

    path: Path
    data: bytes
    sha256: str
    model: torch.nn.Module

    @property
    def size(self) -> int:
        return len(self.data)


def _saved(model: torch.nn.Module, path: Path) -> WeightsFile:
    from zoo.pretrained.files import save_weights

    saved = save_weights(model.state_dict(), path)
    data = saved.path.read_bytes()
    assert hashlib.sha256(data).hexdigest() == saved.sha256
    return WeightsFile(saved.path, data, saved.sha256, model.eval())


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
    return _saved(zoo.create_model("mnist_cnn"), tmp_path_factory.mktemp("mnist") / "mnist_cnn.safetensors")


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
    return _saved(model, tmp_path_factory.mktemp("resnet18") / "resnet18.safetensors")


def entry_for(file: WeightsFile | None, source: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """A published manifest entry for ``file`` (mnist-like preprocessing unless ``fields`` say otherwise)."""
    entry = {
        "status": "published",
        "source": source,
        "sha256": file.sha256 if file else None,
        "size": file.size if file else None,
        "num_classes": 10,
        "input_size": [1, 28, 28],
        "interpolation": "bilinear",
        "crop_pct": 1.0,
        "mean": [0.1307],
        "std": [0.3081],
        "dataset": "mnist",
        "license": "mit",
    }
    entry.update(fields)
    return entry


IMAGENET_FIELDS = {
    "num_classes": 1000, "input_size": [3, 224, 224], "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
    "crop_pct": 0.875, "dataset": "imagenet-1k", "label_names": "imagenet_classes.json", "license": "bsd-3-clause",
}  # fmt: skip


class WeightsEnv:
    """A private weights folder (manifest), zoo cache and Hugging Face cache for one test."""

    def __init__(self, root: Path, server: WeightsServer, org: str) -> None:
        self.dir = root / "weights"
        self.cache = root / "zoo-cache"
        self.hf_home = root / "hf"
        self.server = server
        self.org = org
        self.prefix = f"/{org}-files"

    def manifest(self) -> dict[str, Any]:
        return json.loads((self.dir / "manifest.json").read_text())

    def add(self, name: str, entry: Any) -> Any:
        """List ``entry`` (a WeightsEntry or its JSON object) as ``name``; returns the WeightsEntry written."""
        from zoo.pretrained import manifest

        return manifest.update_entry(name, entry)

    def add_hub(self, name: str, file: WeightsFile, mode: str = "ok", data: bytes | None = None, **fields: Any) -> str:
        """Serve ``file`` (or other ``data``) as Hub repo ``{org}/name``; returns the repo id."""
        repo_id = f"{self.org}/{name}"
        self.server.add_hub(repo_id, "model.safetensors", file.data if data is None else data, mode=mode)
        source = {"type": "hub", "repo_id": "{org}/" + name, "filename": "model.safetensors", "revision": "main"}
        self.add(name, entry_for(file, source, **fields))
        return repo_id

    def add_bundled(self, name: str, file: WeightsFile, **fields: Any) -> Path:
        path = self.dir / f"{name}.safetensors"
        shutil.copyfile(file.path, path)
        self.add(name, entry_for(file, {"type": "bundled", "path": path.name}, **fields))
        return path

    def cached_files(self) -> list[Path]:
        """Every file in zoo's cache of downloads (``files/``), temporary ones included."""
        folder = self.cache / "files"
        return sorted(folder.iterdir()) if folder.is_dir() else []

    def hf_files(self) -> list[Path]:
        """Every file in the Hugging Face cache: zoo reads it, never writes it."""
        return [p for p in (self.hf_home / "hub").rglob("*") if p.is_file()]


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


def subprocess_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The current environment (with the test's variables) for a child Python process."""
    import os

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update(extra or {})
    return env
