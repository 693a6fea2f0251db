"""Helpers the tests share (their fixtures are in the conftest.py files): real weights files and manifest entries, a
private weights environment, running ``zoo`` in this process or a child one, and the one-line error form."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from weights_server import WeightsServer

from zoo.cli import main as zoo_main

ROOT = Path(__file__).resolve().parent.parent
# CI and developers have the read-only real data at ../shared/data; a user's fresh clone does not.
SHARED_DATA = Path(os.environ.get("ZOO_SHARED_DATA", ROOT.parent / "shared" / "data"))

# The one line every expected failure prints: what went wrong, then after " — " what to do.
ERROR_LINE = re.compile(r"^zoo [a-z]+: error: \S.* — \S.*$")
TINY_TRAIN = ("--recipe", "fast", "--batch-size", "16", "--train-subset", "64", "--val-subset", "32")


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


def saved_file(model: torch.nn.Module, path: Path) -> WeightsFile:
    from zoo.pretrained.files import save_weights

    saved = save_weights(model.state_dict(), path)
    data = saved.path.read_bytes()
    assert hashlib.sha256(data).hexdigest() == saved.sha256
    return WeightsFile(saved.path, data, saved.sha256, model.eval())


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


def subprocess_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The current environment (with the test's variables) for a child Python process."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update(extra or {})
    return env


def cli(*argv: str) -> int:
    """Run ``zoo ARGV`` in this process; returns its exit code."""
    return zoo_main([str(a) for a in argv])


def one_error_line(err: str) -> str:
    """``err`` (a failed command's stderr), checked to be one line of the form every zoo error takes."""
    err = err.strip()
    assert len(err.splitlines()) == 1 and ERROR_LINE.match(err), err[:2000]
    return err


def train_argv(data: Path, out: Path, *extra: str, epochs: int = 1, dataset: str = "mnist") -> list[str]:
    """``zoo train mnist_cnn`` on a synthetic IDX folder: 4 steps per epoch."""
    return ["train", "mnist_cnn", "--dataset", dataset, "--data-dir", str(data), *TINY_TRAIN,
            "--epochs", str(epochs), "--output", str(out), *extra]  # fmt: skip


def epoch_lines_match(stdout: str, rows: list[dict[str, Any]]) -> None:
    """The console's epoch lines say what metrics.csv's rows say: losses, right/images of each accuracy, the lr
    the epoch trained with and the images per second of all processes (issue: the console once doubled it)."""
    lines = [line for line in stdout.splitlines() if re.match(r"epoch \d+/\d+  train loss", line)]
    assert len(lines) == len(rows), (lines, rows)
    for line, row in zip(lines, rows, strict=True):
        parts = [f"epoch {row['epoch']}/", f"train loss {row['train_loss']:.4f}", f"lr {row['lr']:.2e}"]
        parts.append(f"({row['img_per_s']:.0f} img/s)")
        for split in ("train", "val", "test"):
            if row.get(f"{split}_acc1") is not None:
                count = int(row[f"{split}_count"])
                parts.append(f"({round(row[f'{split}_acc1'] * count / 100):,}/{count:,}")
            if split != "train" and row.get(f"{split}_loss") is not None:
                parts.append(f"{split} loss {row[f'{split}_loss']:.4f} top-1 ")
        assert all(p in line for p in parts), (line, [p for p in parts if p not in line])
