"""``zoo convert``: torchvision, timm or pickle checkpoints -> a verified safetensors file in zoo's layout, checked
against zoo's model, read back tensor by tensor, and recorded (in the manifest, or pinned for upstream's entries).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from zoo.errors import ArgumentValueError, WeightsError
from zoo.pretrained import manifest
from zoo.pretrained.cache import converted_path, entry_lock, is_offline, torchvision_cache_file, write_pin
from zoo.pretrained.fetch import download, hub_file
from zoo.pretrained.files import (
    SavedWeights,
    WeightsMetadata,
    is_zoo_weights,
    load_file,
    read_pickle_checkpoint,
    save_weights,
)
from zoo.pretrained.load import empty_init, fit_state_dict, from_timm_layout
from zoo.pretrained.manifest import Source, WeightsEntry, hash_prefix
from zoo.registry import model_entrypoint
from zoo.utils.files import check_output_file, sha256_file

TORCHVISION_TAGS = {"IMAGENET1K_V1": "tv_in1k", "IMAGENET1K_V2": "tv2_in1k"}
# Architectures whose ImageNet layout is torchvision's, key for key (and timm's, for ResNet). A table, one line per
# family (fmt: skip, since one name per line would not read as one).
CONVERTIBLE = (
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
    "vgg11", "vgg13", "vgg16", "vgg19", "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn",
    "resnext50_32x4d", "resnext101_32x8d", "resnext101_64x4d", "wide_resnet50_2", "wide_resnet101_2",
)  # fmt: skip
IMAGENET_LABELS = "imagenet_classes.json"


def hub_source(arch: str, tag: str) -> Source:
    """Where zoo publishes ``arch.tag``: repo ``{org}/arch.tag`` on the Hub, file ``model.safetensors``."""
    return Source(type="hub", repo_id=f"{{org}}/{arch}.{tag}", filename="model.safetensors", revision="main")


def _check_arch(arch: str) -> None:
    if arch not in CONVERTIBLE:
        raise ArgumentValueError(f"cannot convert weights for {arch!r}: zoo converts {', '.join(CONVERTIBLE)}")


def torchvision_weights(arch: str, weights: str) -> Any:
    """torchvision's ``Weights`` enum member ``weights`` (e.g. ``IMAGENET1K_V2``) of ``arch``."""
    import torchvision.models as tvm

    _check_arch(arch)
    enum = tvm.get_model_weights(arch)
    key = weights.split(".")[-1]
    if key not in enum.__members__:
        raise ArgumentValueError(f"torchvision has no {arch} weights {weights!r}; it has {', '.join(enum.__members__)}")
    return enum[key]


def torchvision_entry(arch: str, weights: str) -> tuple[str, WeightsEntry]:
    """(tag, manifest entry) for torchvision's ``arch`` weights ``weights``, from torchvision's own metadata."""
    w = torchvision_weights(arch, weights)
    if w.name not in TORCHVISION_TAGS:
        known = ", ".join(TORCHVISION_TAGS)
        raise ArgumentValueError(f"{arch} {w.name} is not an ImageNet classifier zoo lists; convertible: {known}")
    tag = TORCHVISION_TAGS[w.name]
    tf = w.transforms()
    crop, resize = int(tf.crop_size[0]), int(tf.resize_size[0])
    metrics = w.meta["_metrics"]["ImageNet-1K"]
    enum_name = type(w).__name__
    entry = WeightsEntry(
        status="unpublished",
        source=hub_source(arch, tag),
        num_classes=len(w.meta["categories"]),
        label_names=IMAGENET_LABELS,
        input_size=(3, crop, crop),
        interpolation=tf.interpolation.value,
        crop_pct=crop / resize,
        mean=tuple(tf.mean),
        std=tuple(tf.std),
        dataset="imagenet-1k",
        metrics={
            "top1": metrics["acc@1"],
            "top5": metrics["acc@5"],
            "measured_by": "torchvision",
            "command": f"torchrun --nproc_per_node=8 references/classification/train.py --model {arch} "
            f"--test-only --weights {enum_name}.{w.name} --data-path /path/to/imagenet",
        },
        license="bsd-3-clause",
        origin={
            "command": f"zoo convert torchvision {arch} --weights {w.name}",
            "upstream": f"torchvision.models.{enum_name}.{w.name}",
            "url": w.url,
            "recipe": w.meta.get("recipe"),
        },
    )
    return tag, entry


def _torchvision_state_dict(arch: str, weights: str, file: str | None, check_hash: bool) -> dict[str, torch.Tensor]:
    w = torchvision_weights(arch, weights)
    fetched = None
    if file is None:  # torchvision's own download, else zoo's: both checked below as a --file is
        file = torchvision_cache_file(w.url)
        if file is None and is_offline():
            raise WeightsError(f"offline mode is on: download {w.url} elsewhere and pass it with --file")
        if file is None:
            file = fetched = download(w.url, f"torchvision's {arch} {w.name}", prefix=hash_prefix(w.url), suffix=".pth")
    try:
        actual, expected = sha256_file(file), str(hash_prefix(w.url))
        if not actual.startswith(expected):
            message = f"{file} is not torchvision's {w.url.rsplit('/', 1)[-1]}: its SHA-256 is {actual}"
            if check_hash:
                raise WeightsError(message, hint="pass --no-check-hash to convert it anyway")
            warnings.warn(message, stacklevel=2)
        return read_pickle_checkpoint(file)
    finally:
        if fetched is not None:
            fetched.unlink(missing_ok=True)


def timm_to_zoo(arch: str, state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """timm's layout -> zoo's: ResNet keys are equal; VGG's conv "pre_logits" becomes classifier.0/3 Linears."""
    _check_arch(arch)
    return dict(from_timm_layout(state_dict))


def timm_entry(name: str) -> tuple[str, str, WeightsEntry]:
    """(arch, tag, manifest entry) for timm's pretrained ``arch.tag``, from timm's pretrained_cfg."""
    import timm

    arch, _, tag = name.partition(".")
    _check_arch(arch)
    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is None or not tag:
        known = ", ".join(timm.list_pretrained(f"{arch}.*")) or "none"
        raise ArgumentValueError(f"timm has no pretrained weights {name!r}; those of {arch}: {known}")
    dataset = "imagenet-1k" if tag.endswith("in1k") else "imagenet-21k" if "in21k" in tag else "unknown"
    entry = WeightsEntry(
        status="unpublished",
        source=hub_source(arch, tag),
        num_classes=cfg.num_classes,
        label_names=IMAGENET_LABELS if cfg.num_classes == 1000 and dataset == "imagenet-1k" else None,
        input_size=tuple(cfg.input_size),
        interpolation=cfg.interpolation,
        crop_pct=cfg.crop_pct,
        mean=tuple(cfg.mean),
        std=tuple(cfg.std),
        dataset=dataset,
        license=cfg.license or "unknown",
        origin={"command": f"zoo convert timm {name}", "upstream": f"timm {name} (hf-hub:{cfg.hf_hub_id})"},
    )
    return arch, tag, entry


def timm_hub_file(name: str) -> Path:
    """timm's file of ``name`` from its Hub repo, fetched and verified as zoo fetches weights (not through
    ``timm.create_model(pretrained=True)``, whose huggingface_hub names files after unchecked headers)."""
    import timm

    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is None or not cfg.hf_hub_id:
        raise ArgumentValueError(f"timm's {name} has no Hub repo to download from: pass its file with --file")
    filename = cfg.hf_hub_filename or "model.safetensors"
    source = Source(type="hub", repo_id=cfg.hf_hub_id, filename=filename, revision="main")
    if is_offline():
        raise WeightsError(f"offline mode is on: pass timm's {name} file ({cfg.hf_hub_id}, {filename}) with --file")
    with entry_lock(name):  # checked against the Hub's SHA-256 and pinned on this machine, as an unpinned source
        return hub_file(name, source, None, None, False, network=True)  # type: ignore[return-value]


def convert_state_dict(
    arch: str,
    state_dict: Mapping[str, torch.Tensor],
    out: str | os.PathLike[str],
    metadata: WeightsMetadata | None = None,
    entry: WeightsEntry | None = None,
    **model_kwargs: Any,
) -> SavedWeights:
    """Check ``state_dict`` against zoo's ``arch`` (built with ``model_kwargs``), save it with ``entry``'s
    preprocessing (or the model's) in its header, read it back and compare every tensor."""
    with empty_init():
        model = model_entrypoint(arch)(**model_kwargs)
    sd, _ = fit_state_dict(model, state_dict, f"the {arch} weights", False, False, stacklevel=2)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in sd.items()}
    cfg = entry.preprocessing() if entry else dict(model.pretrained_cfg)
    meta = replace(
        metadata or WeightsMetadata(), architecture=arch, pretrained_cfg=cfg, model_args=model_kwargs or None
    )
    saved = save_weights(tensors, out, metadata=meta)
    written = load_file(saved.path)
    differ = [k for k in tensors if k not in written or not torch.equal(written[k], tensors[k])]
    if differ or set(written) != set(tensors):
        Path(saved.path).unlink(missing_ok=True)
        raise WeightsError(f"{saved.path} did not read back equal to the source ({', '.join(differ[:5])}); removed it")
    return saved


def record_conversion(name: str, entry: WeightsEntry, saved: SavedWeights, command: str) -> WeightsEntry:
    """Put the converted file's SHA-256 and size into the manifest entry ``name`` (created if missing)."""
    arch, _, tag = name.partition(".")
    if name not in manifest.load_manifest()["weights"]:
        origin = {**(entry.origin or {}), "command": command}
        default = entry.default or not manifest.entries_for_arch(arch)
        new = replace(entry, sha256=saved.sha256, size=saved.size, origin=origin, default=default)
        return manifest.update_entry(name, new)
    existing = manifest.get_entry(arch, tag)
    if existing.third_party:
        # The entry describes upstream's files: the local conversion is pinned in zoo's cache, not the manifest.
        write_pin(name, "converted", {"sha256": saved.sha256, "size": saved.size})
        return existing
    if existing.sha256 and existing.sha256 != saved.sha256:
        if existing.published:
            raise WeightsError(
                f"the converted file {saved.path} has SHA-256 {saved.sha256}, but the published {name} has "
                f"{existing.sha256}: the upstream file or the conversion differs. The manifest was not changed."
            )
        warnings.warn(f"{name}: replacing the recorded SHA-256 {existing.sha256} (not published)", stacklevel=2)
    origin = {**(existing.origin or {}), "command": command}
    return manifest.update_entry(name, {"sha256": saved.sha256, "size": saved.size, "origin": origin}, merge=True)


def convert_checkpoint(
    file: str | os.PathLike[str], arch: str, out: str | os.PathLike[str] | None = None, **model_kwargs: Any
) -> SavedWeights:
    """A ``torch.save`` checkpoint of a zoo model -> a verified safetensors file (default: beside it)."""
    target = Path(out) if out else Path(file).with_suffix(".safetensors")
    if target.resolve() == Path(file).resolve():
        raise ArgumentValueError(f"--out {target} would overwrite the checkpoint; choose another path")
    check_output_file(target, "--out", is_zoo_weights)
    return convert_state_dict(arch, read_pickle_checkpoint(file), target, **model_kwargs)


def convert_upstream(
    library: str,
    model: str,
    *,
    weights: str = "IMAGENET1K_V1",
    file: str | None = None,
    check_hash: bool = True,
    out: str | os.PathLike[str] | None = None,
    record_as: str | None = None,
) -> tuple[str, SavedWeights]:
    """torchvision's (``model`` an arch) or timm's (``model`` an ``arch.tag``) weights -> a verified safetensors
    file in zoo's layout (default: where ``pretrained=True`` looks for converted files); with ``record_as``, the
    command that did it, the file's hash goes into the manifest (or its pin). Returns ``(arch.tag, saved file)``."""
    if library == "torchvision":
        arch, (tag, entry) = model, torchvision_entry(model, weights)
        state = _torchvision_state_dict(arch, weights, file, check_hash=check_hash)
    elif library == "timm":
        arch, tag, entry = timm_entry(model)
        file = str(file or timm_hub_file(model))
        # timm's training checkpoints (pickles): their EMA weights
        state = load_file(file) if file.endswith(".safetensors") else read_pickle_checkpoint(file, prefer_ema=True)
        state = timm_to_zoo(arch, state)
    else:
        raise ArgumentValueError(f"library={library!r}: convert from 'torchvision' or 'timm'")
    name = f"{arch}.{tag}"
    target = check_output_file(out, "--out", is_zoo_weights) if out else converted_path(name)
    upstream = WeightsMetadata(source=(entry.origin or {}).get("upstream"))
    saved = convert_state_dict(arch, state, target, metadata=upstream, entry=entry)
    if record_as:
        record_conversion(name, entry, saved, record_as)
    return name, saved
