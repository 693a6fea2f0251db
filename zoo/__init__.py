"""zoo: a PyTorch model zoo of VGG, ResNet and the MNIST CNNs of a PyTorch course, with verified weights.

``import zoo`` stays light: torchvision, timm and huggingface_hub are imported only where used.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from zoo import models  # noqa: F401  (registers every architecture)
from zoo.factory import create_model, list_models
from zoo.registry import is_model, model_entrypoint, register_model, split_model_name_tag

__version__ = "0.1.0"

# Heavier entry points, imported on first use so that `import zoo` costs little over `import torch`.
_LAZY = {
    "create_transform": "zoo.data.transforms",
    "load_weights": "zoo.pretrained.load",
    "save_weights": "zoo.pretrained.files",
    "model_info": "zoo.info",
    "fit": "zoo.training",
    "evaluate": "zoo.evaluation",
    "get_weights": "zoo.weights",
    "list_weights": "zoo.weights",
    "Weights": "zoo.weights",
}

__all__ = [
    "create_model",
    "is_model",
    "list_models",
    "model_entrypoint",
    "register_model",
    "split_model_name_tag",
    *_LAZY,
]


# Submodules reachable as attributes (``zoo.training.fit(...)``) without importing them up front.
_SUBMODULES = ("benchmark", "cli", "data", "errors", "evaluation", "export", "factory", "info", "models", "predict",
               "pretrained", "publish", "registry", "runs", "training", "utils", "weights")  # fmt: skip


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    if name in _SUBMODULES:
        return import_module(f"zoo.{name}")
    raise AttributeError(f"module 'zoo' has no attribute {name!r}")
