"""Weights as objects, before any model is built: what torchvision's ``ResNet50_Weights`` and timm's
``get_pretrained_cfg`` give their users, read from zoo's manifest.

    w = zoo.get_weights("resnet50")               # the default weights of the architecture
    w = zoo.get_weights("resnet50.tv_in1k")       # a set of weights by name
    model = zoo.create_model("resnet50", weights=w)
    preprocess = w.transforms()                   # the eval transform the metrics were measured with
    w.metrics["top1"], w.label_names[:3], w.sha256, w.size

Nothing here imports torchvision, timm or huggingface_hub; ``transforms()`` imports torchvision when called.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from zoo.errors import ManifestError
from zoo.pretrained import manifest
from zoo.registry import split_model_name_tag


def _frozen(value: Any) -> Any:
    """A read-only copy: mappings become MappingProxyType, lists tuples."""
    if isinstance(value, Mapping):
        return MappingProxyType({k: _frozen(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(v) for v in value)
    return value


# The dataset names torchvision's ``meta["_metrics"]`` uses as keys.
_DATASET_NAMES = {
    "imagenet-1k": "ImageNet-1K",
    "cifar10": "CIFAR-10",
    "mnist": "MNIST",
    "fashion_mnist": "FashionMNIST",
}


@dataclass(frozen=True, repr=False)
class Weights:
    """One set of weights of the manifest: its facts, and the transform its metrics were measured with."""

    name: str
    arch: str
    tag: str
    default: bool
    status: str
    num_classes: int
    label_names: tuple[str, ...] | None
    dataset: str | None
    metrics: Mapping[str, Any]
    preprocessing: Mapping[str, Any]
    model_args: Mapping[str, Any]
    source: str
    sha256: str | None
    size: int | None
    license: str | None

    @property
    def meta(self) -> Mapping[str, Any]:
        """torchvision's ``weights.meta``: ``categories`` and ``_metrics`` shaped as torchvision's
        (``{"ImageNet-1K": {"acc@1": ..., "acc@5": ...}}``), with zoo's own ``dataset`` and ``license``."""
        top = {f"acc@{k[3:]}": v for k, v in self.metrics.items() if k in ("top1", "top5") and v is not None}
        dataset = _DATASET_NAMES.get(self.dataset or "", self.dataset or "unknown")
        metrics = {dataset: top} if top else {}
        return MappingProxyType(
            {"categories": self.label_names, "_metrics": metrics, "license": self.license, "dataset": self.dataset}
        )

    def transforms(self, training: bool = False) -> Any:
        """The torchvision transform of these weights (eval: resize, centre crop, tensor, normalise)."""
        from zoo.data.transforms import create_transform

        return create_transform(dict(self.preprocessing), training=training)

    def is_cached(self) -> bool:
        """Whether the file is on this machine and verified (bundled, converted or downloaded); no network."""
        from zoo.pretrained.fetch import cached_state

        return cached_state(self.name).startswith(("bundled", "cached", "converted"))

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"Weights({self.name!r})"  # one line, as torchvision's enum members print


def _weights(arch: str, tag: str) -> Weights:
    entry = manifest.get_entry(arch, tag)
    same = {f: getattr(entry, f) for f in ("default", "status", "num_classes", "dataset", "sha256", "size", "license")}
    return Weights(
        **same,
        name=f"{arch}.{tag}",
        arch=arch,
        tag=tag,
        label_names=manifest.label_names(entry),
        metrics=_frozen(entry.metrics or {}),
        preprocessing=_frozen(entry.preprocessing()),
        model_args=_frozen(entry.model_args or {}),
        source=manifest.describe_source(entry),
    )


def get_weights(name: str) -> Weights:
    """The weights ``arch.tag``, or an architecture's default weights (``"resnet50"``, or ``"resnet50.DEFAULT"``
    as in torchvision). A ManifestError names what exists when there is no such set."""
    arch, tag = split_model_name_tag(name)  # a TypeError for anything but a name
    if not tag or tag == "DEFAULT":
        tag = manifest.default_tag(arch) or ""
        if not tag:
            raise ManifestError(f"{arch!r} has no weights in the manifest; `zoo list --pretrained` lists those that do")
    return _weights(arch, tag)


def list_weights(arch: str | None = None) -> list[Weights]:
    """Every set of weights of ``arch`` (all of them without one), default first, then by name."""
    names = manifest.weight_names()
    if arch is not None:
        names = [n for n in names if split_model_name_tag(n)[0] == arch]
    found = [_weights(*split_model_name_tag(n)) for n in names]
    return sorted(found, key=lambda w: (w.arch, not w.default, w.tag))
