"""Loading pretrained weights: build a model around them fast, load and adapt them.

``create_model(name, pretrained=True)`` ends up in :func:`build_with_weights`: the model is built on the
meta device without initialising anything, the verified safetensors file is memory-mapped and its
tensors become the parameters (``load_state_dict(assign=True)``). Only a new classifier, if one is
asked for, is initialised for real.

Only safetensors files are loaded. Pickle checkpoints (``.pth``/``.pt``/``.bin``) can run code when
read, so they are refused here and read only by ``zoo convert`` (with ``torch.load(weights_only=True)``).
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from torch.overrides import TorchFunctionMode

from zoo.errors import WeightsError
from zoo.hub import manifest
from zoo.hub.entry import WeightsEntry
from zoo.hub.fetch import fetch
from zoo.hub.metadata import WeightsMetadata
from zoo.models.base import fit_channels

__all__ = [
    "adapt_input_conv",
    "build_with_weights",
    "empty_init",
    "fit_state_dict",
    "load_file",
    "load_weights",
    "read_metadata",
    "resolve_name",
]

PICKLE_SUFFIXES = (".pth", ".pt", ".bin", ".pkl", ".ckpt", ".tar")
_INIT_OPS = frozenset(
    {"normal_", "uniform_", "fill_", "zero_", "random_", "bernoulli_", "exponential_", "trunc_normal_",
     "kaiming_normal_", "kaiming_uniform_", "xavier_normal_", "xavier_uniform_", "constant_", "zeros_", "ones_",
     "orthogonal_", "eye_", "dirac_", "sparse_"}
)  # fmt: skip
_MAX_LISTED = 12


class _SkipInitOnMeta(TorchFunctionMode):
    """Make in-place initialisation of meta tensors a no-op.

    A meta tensor has no values to initialise, yet some init ops (``normal_``) go through
    ``torch._refs`` on the meta device, whose first use imports ``torch._dynamo``: over a second of
    start-up for nothing.
    """

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        kwargs = kwargs or {}
        if getattr(func, "__name__", None) in _INIT_OPS:
            target = args[0] if args else kwargs.get("tensor", kwargs.get("self"))
            if isinstance(target, torch.Tensor) and target.is_meta:
                return target
        return func(*args, **kwargs)


@contextmanager
def empty_init() -> Iterator[None]:
    """Build modules on the meta device, skipping their initialisation (the weights will replace it)."""
    with torch.device("meta"), _SkipInitOnMeta():
        yield


# --------------------------------------------------------------------------------------------- files


def _check_safetensors(path: Path) -> None:
    """Refuse pickle checkpoints and anything else that is not a safetensors file."""
    try:
        with open(path, "rb") as f:
            head = f.read(9)
        size = path.stat().st_size
    except FileNotFoundError:
        raise FileNotFoundError(f"weights file {path} does not exist") from None
    header_len = int.from_bytes(head[:8], "little") if len(head) == 9 else -1
    if 0 < header_len <= size - 8 and head[8:9] == b"{":
        return
    is_pickle = path.suffix.lower() in PICKLE_SUFFIXES or head[:4] == b"PK\x03\x04" or head[:1] == b"\x80"
    if is_pickle:
        raise ValueError(
            f"{path} is a pickle checkpoint (torch.save format). zoo loads only safetensors files, because "
            f"unpickling a file can run arbitrary code. Convert it once with `zoo convert checkpoint {path} "
            "--model ARCH` (it reads tensors only, with torch.load(weights_only=True)) and load the .safetensors "
            "file it writes; torchvision and timm weights have `zoo convert torchvision` and `zoo convert timm`."
        )
    raise ValueError(f"{path} is not a safetensors file (its header is not a safetensors header)")


def load_file(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file, memory-mapped (pickle files are refused)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file as _load

    path = Path(path)
    _check_safetensors(path)
    try:
        return _load(path)
    except SafetensorError as e:
        raise ValueError(f"{path} is not a valid safetensors file: {e}") from None


def read_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The string metadata stored in a safetensors file's header."""
    from safetensors import safe_open

    path = Path(path)
    _check_safetensors(path)
    with safe_open(path, framework="pt") as f:
        return dict(f.metadata() or {})


# ---------------------------------------------------------------------------------------- adaptation


def adapt_input_conv(weight: torch.Tensor, in_chans: int) -> torch.Tensor:
    """Adapt a first-convolution weight ``(out, C, kh, kw)`` to ``in_chans`` input channels.

    One channel: the sum over the C channels, so a grey image gives the response the original gave to
    that image repeated in every channel. N channels: the C channels repeated and scaled by C/N, which
    keeps the response to N copies of one image the same for N a multiple of C.
    """
    # timm.models.adapt_input_conv does the same, but importing timm takes longer than loading most of
    # zoo's weights; create_model(..., pretrained=True) never imports it. tests/test_weights_load.py
    # compares the two.
    channels = weight.shape[1]
    if in_chans == channels:
        return weight
    w = weight.float()
    if in_chans == 1:
        out = w.sum(dim=1, keepdim=True)
    else:
        out = w.repeat(1, math.ceil(in_chans / channels), 1, 1)[:, :in_chans] * (channels / in_chans)
    return out.to(weight.dtype)


def _listing(title: str, items: list[str]) -> list[str]:
    if not items:
        return []
    shown = [f"    {item}" for item in items[:_MAX_LISTED]]
    if len(items) > _MAX_LISTED:
        shown.append(f"    ... and {len(items) - _MAX_LISTED} more")
    return [f"  {title} ({len(items)}):", *shown]


def fit_state_dict(
    model: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    what: str,
    adapt_head: bool,
    adapt_in_chans: bool,
    stacklevel: int,
    adapt_stem: bool = False,
) -> tuple[dict[str, torch.Tensor], bool]:
    """Check ``state_dict`` against ``model`` key by key and shape by shape, adapting head/first conv if allowed.

    Returns the state dict to load and whether the classifier was dropped (the model keeps a new one).
    With ``adapt_stem``, a first convolution whose kernel differs (a 7x7 ImageNet stem into a 3x3 CIFAR
    stem, or back) is left out with a warning naming it: the model keeps its own, freshly initialised one.
    Anything else that does not fit raises one error listing every missing, unexpected and mismatched key.
    """
    expected = {k: (tuple(v.shape), v.dtype) for k, v in model.state_dict().items()}
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    sd = dict(state_dict)

    conv_key = f"{cfg.get('first_conv')}.weight"
    if adapt_in_chans and conv_key in sd and conv_key in expected:
        have, want = sd[conv_key].shape[1], expected[conv_key][0][1]
        if have != want and sd[conv_key].dim() == 4:
            sd[conv_key] = adapt_input_conv(sd[conv_key], want)
            how = "summed over" if want == 1 else f"repeated and scaled by {have}/{want} from"
            warnings.warn(
                f"{what}: {conv_key} adapted from {have} to {want} input channels ({how} the original channels)",
                stacklevel=stacklevel,
            )
    stem_fresh: set[str] = set()
    if adapt_stem:
        if conv_key in sd and conv_key in expected and sd[conv_key].shape[2:] != expected[conv_key][0][2:]:
            kernel = "x".join(map(str, sd[conv_key].shape[2:]))
            stem_fresh = {conv_key}
            del sd[conv_key]
            warnings.warn(
                f"{what}: {conv_key} is freshly initialised: the weights' first convolution has a {kernel} kernel, "
                f"the model's stem {'x'.join(map(str, expected[conv_key][0][2:]))}; every other tensor is loaded",
                stacklevel=stacklevel,
            )

        # VGG's CIFAR stem also ends in its own head (512 wide, not 25088 -> 4096 -> 4096): keep none of it.
        head_module = (cfg.get("classifier") or "").rpartition(".")[0]
        prefix = f"{head_module}."
        if head_module and any(k.startswith(prefix) and expected.get(k, (None,))[0] != tuple(sd[k].shape) for k in sd):
            dropped = [k for k in sd if k.startswith(prefix)]
            for k in dropped:
                del sd[k]
            stem_fresh |= {k for k in expected if k.startswith(prefix)}
            warnings.warn(
                f"{what}: the model's {head_module} is freshly initialised: its layers differ in shape from the "
                f"weights' ({', '.join(dropped[:4])}{' ...' if len(dropped) > 4 else ''})",
                stacklevel=stacklevel,
            )

    head = cfg.get("classifier")
    head_keys = sorted((k for k in sd if head and k.rsplit(".", 1)[0] == head), key=lambda k: (k.endswith("bias"), k))
    head_dropped = False
    if adapt_head and head_keys and any(expected.get(k, (None,))[0] != tuple(sd[k].shape) for k in head_keys):
        old = sd[head_keys[0]].shape[0]
        for k in head_keys:
            del sd[k]
        head_dropped = True
        new = getattr(model, "num_classes", "?")
        fate = "the model has no classifier" if new == 0 else f"the model's {head} is freshly initialised"
        warnings.warn(
            f"{what}: dropped the classifier keys {', '.join(head_keys)} (the weights have {old} classes, the "
            f"model {new}); {fate}",
            stacklevel=stacklevel,
        )

    fresh = {k for k in expected if head_dropped and k.rsplit(".", 1)[0] == head} | stem_fresh
    missing = [k for k in expected if k not in sd and k not in fresh]
    unexpected = [k for k in sd if k not in expected]
    mismatched = [
        f"{k}: weights {tuple(sd[k].shape)}, model {expected[k][0]}"
        for k in sd
        if k in expected and tuple(sd[k].shape) != expected[k][0]
    ]
    if missing or unexpected or mismatched:
        hints = []
        if head_keys and any(k in sd and expected.get(k, (None,))[0] != tuple(sd[k].shape) for k in head_keys):
            hints.append(
                f"the classifier differs: pass num_classes={getattr(model, 'num_classes', 'N')} explicitly to "
                "create_model to replace it (or load_weights(..., adapt=True))"
            )
        if conv_key in sd and conv_key in expected and sd[conv_key].shape[1] != expected[conv_key][0][1]:
            hints.append("the input channels differ: pass in_chans explicitly to adapt the first convolution")
        if not hints:
            hints.append("the file was saved from another architecture or configuration (e.g. stem, depth)")
        lines = [f"{what} does not fit {type(model).__name__}:"]
        lines += _listing("shape mismatch", mismatched)
        lines += _listing("missing from the weights", missing)
        lines += _listing("unexpected in the weights", unexpected)
        lines += [f"  hint: {h}" for h in hints]
        raise WeightsError("\n".join(lines))
    # assign=True keeps the file's dtype; keep the model's instead (e.g. a float16 file, a float32 model).
    for k, t in sd.items():
        dtype = expected[k][1]
        if t.dtype != dtype and t.is_floating_point() and dtype.is_floating_point:
            sd[k] = t.to(dtype)
    return sd, head_dropped


def _load_into(
    model: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    what: str,
    adapt_head: bool,
    adapt_in_chans: bool,
    stacklevel: int = 4,
) -> nn.Module:
    # stacklevel: warnings point at the user's call (load_weights, or create_model via build_with_weights).
    sd, head_dropped = fit_state_dict(model, state_dict, what, adapt_head, adapt_in_chans, stacklevel)
    on_meta = any(t.is_meta for t in model.parameters()) or any(t.is_meta for t in model.buffers())
    if on_meta and head_dropped:
        # The new head must be initialised for real: build it now, outside the meta device.
        model.reset_classifier(model.num_classes)
    model.load_state_dict(sd, strict=False, assign=on_meta)
    left = [n for n, t in (*model.named_parameters(), *model.named_buffers()) if t.is_meta]
    if left:
        raise WeightsError(f"{what}: these tensors were neither in the weights nor initialised: {', '.join(left)}")
    return model


def _as_weights_path(source: str | os.PathLike[str]) -> tuple[Path, str]:
    path = Path(source)
    if path.exists():
        return path, str(path)
    name = str(source)
    if "." in name and name in manifest.load_manifest()["weights"] and os.sep not in name:
        return fetch(name), name
    raise FileNotFoundError(
        f"{source} is neither a file nor a weights name in the manifest (`zoo list --pretrained` lists them)"
    )


def load_weights(model: nn.Module, source: str | os.PathLike[str], *, adapt: bool = False) -> nn.Module:
    """Load a safetensors file (or the weights ``arch.tag`` from the manifest) into ``model``; returns it.

    Loading is strict: a file that does not fit raises an error listing missing, unexpected and
    shape-mismatched keys. With ``adapt=True`` a classifier of another size is skipped (the model keeps
    its own) and a first convolution with other input channels is adapted, each with a warning. A
    model on the meta device takes the file's tensors as they are (``assign``), memory-mapped.
    """
    path, what = _as_weights_path(source)
    return _load_into(model, load_file(path), what, adapt_head=adapt, adapt_in_chans=adapt)


# ------------------------------------------------------------------------------------ create_model


def resolve_name(name: str) -> tuple[str, str]:
    """``arch.tag`` -> (arch, tag); a bare arch gives its default tag (ValueError if it has no weights)."""
    arch, _, tag = name.partition(".")
    if tag:
        manifest.get_entry(arch, tag)
        return arch, tag
    tag = manifest.default_tag(arch)
    if tag is None:
        raise ValueError(
            f"{arch} has no pretrained weights in the manifest; `zoo list --pretrained` lists those that "
            "do, or load your own file with checkpoint_path="
        )
    return arch, tag


def _cfg_with(model: nn.Module, arch: str, tag: str | None, info: Mapping[str, Any], labels: Any, extra: dict) -> dict:
    """The model's pretrained_cfg updated with the preprocessing (``info``) and class names of its weights."""
    cfg = dict(model.pretrained_cfg)
    in_chans = model.in_chans
    same_head = model.num_classes == info.get("num_classes")
    cfg.update({k: info[k] for k in ("interpolation", "crop_pct", "crop_mode", "dataset", "license") if info.get(k)})
    if info.get("input_size"):
        cfg["input_size"] = (in_chans, *tuple(info["input_size"])[1:])
    for key in ("mean", "std"):
        if info.get(key):
            cfg[key] = fit_channels(tuple(info[key]), in_chans)
    cfg.update(
        architecture=arch,
        tag=tag or None,
        num_classes=model.num_classes,
        label_names=tuple(labels) if same_head and labels else None,
        **extra,
    )
    return cfg


def build_with_weights(
    arch: str,
    tag: str,
    builder: Callable[..., nn.Module],
    kwargs: Mapping[str, Any],
    pretrained: bool = False,
    checkpoint_path: str | os.PathLike[str] | None = None,
) -> nn.Module:
    """Build ``arch`` with weights: the manifest's ``arch.tag`` (or the default tag) or a local file.

    * a tag without ``pretrained``: the tag's pretrained_cfg (preprocessing, classes) and random weights;
    * ``pretrained``: the verified file of ``arch.tag`` (downloaded once, then from the cache);
    * ``checkpoint_path``: a local safetensors file (its :class:`WeightsMetadata` pretrained_cfg and
      model_args, if any, supply defaults); it takes precedence over ``pretrained``.

    The entry's ``num_classes``, input channels and ``model_args`` are builder defaults; a ``num_classes``
    or ``in_chans`` passed in ``kwargs`` that differs from the weights adapts them (new classifier with a
    warning, first convolution summed or repeated). Anything else that does not fit is an error.
    """
    entry: WeightsEntry | None = None
    if tag:
        entry = manifest.get_entry(arch, tag)
    elif pretrained and checkpoint_path is None:
        tag = resolve_name(arch)[1]
        entry = manifest.get_entry(arch, tag)
    name = f"{arch}.{tag}" if tag else arch

    path: Path | None = None
    # info: the preprocessing and classes of the weights, in pretrained_cfg's keys.
    info: dict[str, Any] = entry.preprocessing() if entry else {}
    defaults: dict[str, Any] = dict(entry.model_args or {}) if entry else {}
    labels = manifest.label_names(entry) if entry else None
    extra: dict[str, Any] = {}
    if checkpoint_path is not None:
        path = Path(checkpoint_path)
        try:
            meta = WeightsMetadata.from_header(read_metadata(path))
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None
        if not entry:
            info = dict(meta.pretrained_cfg or {})
            defaults = dict(meta.model_args or {})
            labels = info.get("label_names")
        extra["file"] = str(path)
    elif pretrained:
        path = fetch(name)
    if entry:
        source = manifest.resolve_source(entry)
        extra["sha256"] = entry.sha256
        if source.type == "hub":
            extra.update(hf_hub_id=source.repo_id, hf_hub_filename=source.filename)
        elif source.type == "url":
            extra["url"] = source.url
        if path is not None and "file" not in extra:
            extra["file"] = str(path)
    if info.get("num_classes") is not None:
        defaults["num_classes"] = info["num_classes"]
    if info.get("input_size"):
        defaults["in_chans"] = info["input_size"][0]
    model_kwargs = {**defaults, **kwargs}

    if path is None:
        model = builder(**model_kwargs)
    else:
        with empty_init():
            model = builder(**model_kwargs)
        what = f"weights {name} ({path})" if checkpoint_path is None else f"checkpoint {path}"
        adapt = {"adapt_head": "num_classes" in kwargs, "adapt_in_chans": "in_chans" in kwargs}
        _load_into(model, load_file(path), what, **adapt, stacklevel=5)
    model.pretrained_cfg = _cfg_with(model, arch, tag, info, labels, extra)
    return model
