"""Loading weights into a model: build it around them fast, fit the state dict, adapt what may be adapted.

``create_model(name, pretrained=True)`` ends up in :func:`build_with_weights`: the model is built on the
meta device without initialising anything, the verified safetensors file is memory-mapped and its tensors
become the parameters (``load_state_dict(assign=True)``). Only a new classifier, if one is asked for, is
initialised for real.

:func:`fit_state_dict` matches key by key, shape by shape and dtype by dtype: a classifier of another size
or a first convolution with other input channels is adapted when asked (with a warning naming the keys);
anything else that does not fit is one error listing every missing, unexpected, mismatched and wrongly
typed tensor. :func:`check_finite` refuses NaN and infinite values. :func:`describe_weights` is what
``zoo info`` prints about a model's weights.
"""

from __future__ import annotations

import fnmatch
import inspect
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

from zoo.errors import ManifestError, WeightsError, WeightsFileError
from zoo.models.base import with_input_size
from zoo.models.cfg import check_preprocessing, fit_channels, without_source
from zoo.pretrained import manifest
from zoo.pretrained.cache import mark_finite, marked_finite
from zoo.pretrained.fetch import cached_state, fetch, fetch_file
from zoo.pretrained.files import (
    WeightsMetadata,
    load_file,
    read_metadata,
    strip_wrapper_prefix,
)
from zoo.pretrained.manifest import WeightsEntry

__all__ = [
    "adapt_input_conv",
    "build_with_weights",
    "check_finite",
    "default_weights_cfg",
    "describe_weights",
    "empty_init",
    "expand_names",
    "fit_state_dict",
    "from_timm_layout",
    "human_size",
    "load_weights",
    "resolve_name",
]


_MAX_LISTED = 12
_TIMM_VGG_HEAD = {"pre_logits.fc1.": "classifier.0.", "pre_logits.fc2.": "classifier.3.", "head.fc.": "classifier.6."}


def from_timm_layout(state_dict: Mapping[str, torch.Tensor]) -> Mapping[str, torch.Tensor]:
    """timm's VGG layout -> torchvision's (zoo's); any other state dict is returned as it is.

    timm keeps VGG's ``features.*`` but holds the classifier as ``pre_logits.fc1`` (a 7x7 conv),
    ``pre_logits.fc2`` (a 1x1 conv) and ``head.fc``. A 7x7 conv over the 512x7x7 map is the Linear over
    its (C, H, W) flattening, so each conv weight is a view of the same memory: nothing is copied, and a
    memory-mapped file stays memory-mapped.
    """
    if "pre_logits.fc1.weight" not in state_dict:
        return state_dict
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        for old, new in _TIMM_VGG_HEAD.items():
            if key.startswith(old):
                key = new + key[len(old) :]
                if key.endswith("weight") and value.dim() == 4:
                    value = value.view(value.shape[0], -1)
                break
        out[key] = value
    return out


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
    # Only floating point is converted: an integer tensor cast to float (or back) would change its values
    # or meaning without a word (a step counter, an index table, a quantised weight).
    wrong = []
    for k, t in sd.items():
        dtype = expected[k][1]
        if t.dtype != dtype and t.is_floating_point() and dtype.is_floating_point:
            sd[k] = t.to(dtype)
        elif t.dtype != dtype:
            wrong.append(f"{k}: weights {t.dtype}, model {dtype}")
    if wrong:
        lines = [f"{what} has tensors of another type than {type(model).__name__}'s:", *_listing("dtype", wrong)]
        raise WeightsFileError("\n".join(lines), hint="convert the file's tensors to the model's dtypes")
    return sd, head_dropped


def check_finite(state_dict: Mapping[str, torch.Tensor], what: str, hint: str | None = None) -> None:
    """A :class:`WeightsFileError` naming the floating-point tensors that hold NaN or infinite values."""
    bad = [k for k, t in state_dict.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        shown = ", ".join(bad[:_MAX_LISTED]) + (f" and {len(bad) - _MAX_LISTED} more" if len(bad) > _MAX_LISTED else "")
        raise WeightsFileError(
            f"{what} holds NaN or infinite values in {shown}",
            hint=hint or "the weights are broken (a diverged run?); pass allow_nonfinite=True to load them anyway",
        )


_INIT_OPS = frozenset(
    {"normal_", "uniform_", "fill_", "zero_", "random_", "bernoulli_", "exponential_", "trunc_normal_",
     "kaiming_normal_", "kaiming_uniform_", "xavier_normal_", "xavier_uniform_", "constant_", "zeros_", "ones_",
     "orthogonal_", "eye_", "dirac_", "sparse_"}
)  # fmt: skip


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


def _load_into(
    model: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    what: str,
    adapt_head: bool,
    adapt_in_chans: bool,
    stacklevel: int = 4,
    path: Path | None = None,
    allow_nonfinite: bool = False,
) -> nn.Module:
    # stacklevel: warnings point at the user's call (load_weights, or create_model via build_with_weights).
    # The NaN/Inf check reads every tensor (60 ms for resnet50's 100 MB on one core, against 5 ms for the
    # memory-mapped load): it is paid once per file, and the file's verified marker remembers the result.
    if not allow_nonfinite and not (path is not None and marked_finite(path)):
        check_finite(state_dict, what)
        if path is not None:
            mark_finite(path)
    state_dict = from_timm_layout(strip_wrapper_prefix(state_dict))  # the same rules as zoo eval's
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


def load_weights(
    model: nn.Module, source: str | os.PathLike[str], *, adapt: bool = False, allow_nonfinite: bool = False
) -> nn.Module:
    """Load a safetensors file (or the weights ``arch.tag`` from the manifest) into ``model``; returns it.

    Loading is strict: a file that does not fit raises an error listing missing, unexpected,
    shape-mismatched and wrongly typed keys (floating-point tensors take the model's precision; integer
    ones are never cast). With ``adapt=True`` a classifier of another size is skipped (the model keeps
    its own) and a first convolution with other input channels is adapted, each with a warning. A
    model on the meta device takes the file's tensors as they are (``assign``), memory-mapped. Weights
    holding NaN or infinite values are refused unless ``allow_nonfinite=True``.
    """
    path, what = _as_weights_path(source)
    return _load_into(model, load_file(path), what, adapt_head=adapt, adapt_in_chans=adapt, path=path,
                      allow_nonfinite=allow_nonfinite)  # fmt: skip


def resolve_name(name: str) -> tuple[str, str]:
    """``arch.tag`` -> (arch, tag); a bare arch gives its default tag (ManifestError if it has no weights)."""
    arch, _, tag = name.partition(".")
    if tag:
        manifest.get_entry(arch, tag)
        return arch, tag
    tag = manifest.default_tag(arch)
    if tag is None:
        raise ManifestError(
            f"{arch} has no pretrained weights in the manifest; `zoo list --pretrained` lists those that "
            "do, or load your own file with checkpoint_path="
        )
    return arch, tag


def _check_against_model(model: nn.Module, arch: str, info: Mapping[str, Any], what: str) -> None:
    """The weights' preprocessing must suit the model: its fixed input size, one mean/std value per channel."""
    own = model.pretrained_cfg
    size = info.get("input_size")
    if size and own.get("fixed_input_size") and tuple(size[1:]) != tuple(own["input_size"][1:]):
        c, h, w = own["input_size"]
        raise WeightsFileError(
            f"{arch} takes only {c}x{h}x{w} inputs, but {what} declares input_size {list(size)}",
            hint=f"these weights are not {arch}'s; give a file saved from it",
        )
    channels = size[0] if size else model.in_chans
    for key in ("mean", "std"):
        if info.get(key) and len(info[key]) != channels:
            raise WeightsFileError(
                f"{what} has {key}={list(info[key])} for {channels} input channel(s): one value per channel is needed",
                hint="fix the file's preprocessing metadata (zoo.pretrained_cfg)",
            )


def _cfg_with(model: nn.Module, arch: str, tag: str | None, info: Mapping[str, Any], labels: Any, extra: dict) -> dict:
    """The model's pretrained_cfg updated with the preprocessing (``info``) and class names of its weights."""
    cfg = dict(model.pretrained_cfg)
    in_chans = model.in_chans  # differs from the weights' channels only when in_chans was asked for (adapted)
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
    if not same_head and info.get("num_classes") is not None:  # a new head: no longer the weights of that file
        cfg = without_source(cfg)
    return cfg


def default_weights_cfg(model: nn.Module, arch: str) -> dict[str, Any]:
    """``model``'s pretrained_cfg with the preprocessing of ``arch``'s default weights, as timm reports it for a
    model built without weights.

    Only the preprocessing is taken (input size, interpolation, crop fraction and mode, mean and std fitted to
    the model's channels): no tag, class names or source, since no weights were loaded. The cfg stays the
    family's own when the arch has no default weights, when they were trained with another stem, or when the
    manifest cannot be read (a bare model does not need it).
    """
    cfg = dict(model.pretrained_cfg)
    try:
        tag = manifest.default_tag(arch)
        entry = manifest.get_entry(arch, tag) if tag else None
    except ValueError:  # ManifestError included
        return cfg
    if entry is None:
        return cfg
    stem = getattr(model, "stem", None)
    if stem is not None:
        param = inspect.signature(type(model).__init__).parameters.get("stem")
        weights_stem = (entry.model_args or {}).get("stem", param.default if param else None)
        if weights_stem != stem:
            return cfg
    info = entry.preprocessing()
    size = info.get("input_size")
    if not cfg.get("input_size") or (size and cfg.get("fixed_input_size")
                                     and tuple(size[1:]) != tuple(cfg["input_size"][1:])):  # fmt: skip
        return cfg
    cfg.update({k: info[k] for k in ("interpolation", "crop_pct", "crop_mode") if info.get(k)})
    if size:
        cfg = with_input_size(model, cfg, int(size[1]), int(size[2]))
    channels = int(cfg["input_size"][0])
    for key in ("mean", "std"):
        if info.get(key):
            cfg[key] = fit_channels(tuple(info[key]), channels)
    return cfg


def build_with_weights(
    arch: str,
    tag: str,
    builder: Callable[..., nn.Module],
    kwargs: Mapping[str, Any],
    pretrained: bool = False,
    checkpoint_path: str | os.PathLike[str] | None = None,
    folder_cfg: Mapping[str, Any] | None = None,
) -> nn.Module:
    """Build ``arch`` with weights: the manifest's ``arch.tag`` (or the default tag) or a local file.

    * a tag without ``pretrained``: the tag's pretrained_cfg (preprocessing, classes) and random weights;
    * ``pretrained``: the verified file of ``arch.tag`` (downloaded once, then from the cache);
    * ``checkpoint_path``: a local safetensors file (its :class:`WeightsMetadata` pretrained_cfg and
      model_args, if any, supply defaults); it takes precedence over ``pretrained``. ``folder_cfg``: the
      checked preprocessing of a timm-layout folder's ``config.json`` (``local-dir:``, ``hf-hub:``), which
      then stands for the header's.

    The entry's ``num_classes``, input channels and ``model_args`` are builder defaults; a ``num_classes``
    or ``in_chans`` passed in ``kwargs`` that differs from the weights adapts them (new classifier with a
    warning, first convolution summed or repeated). Anything else that does not fit is an error, and so
    is preprocessing that cannot be the model's (another fixed input size, a mean or std without one value
    per channel, sizes beyond ``MAX_INPUT_SIDE``). ``kwargs["allow_nonfinite"]`` (default False) lets
    weights with NaN or infinite values load.
    """
    kwargs = dict(kwargs)
    allow_nonfinite = bool(kwargs.pop("allow_nonfinite", False))
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
        header = read_metadata(path)

        try:  # the header is untrusted: every value is checked before it becomes a size or an argument
            meta = WeightsMetadata.from_header(header)
            if not entry:
                info = check_preprocessing(folder_cfg if folder_cfg is not None else meta.pretrained_cfg or {})
                defaults = dict(meta.model_args or {})
                labels = info.get("label_names")
        except ValueError as e:
            raise WeightsFileError(f"{path}: {e}", hint="the file's metadata is damaged; fix or remove it") from None
        extra["file"] = str(path)
    elif pretrained:
        path, served = fetch_file(name, entry=entry)
        if served is not None:
            extra["source"] = manifest.describe(served)
    if entry:
        # timm's keys: the first Hub repo and the first URL among the sources
        sources = manifest.resolve_sources(entry)
        extra["sha256"] = entry.sha256 or sources[0].sha256
        hub = next((s for s in sources if s.type == "hub"), None)
        url = next((s for s in sources if s.type == "url"), None)
        if hub is not None:
            extra.update(hf_hub_id=hub.repo_id, hf_hub_filename=hub.filename)
        if url is not None:
            extra["url"] = url.url
        if path is not None and "file" not in extra:
            extra["file"] = str(path)
    if info.get("num_classes") is not None:
        defaults["num_classes"] = info["num_classes"]
    if info.get("input_size"):
        defaults["in_chans"] = info["input_size"][0]
    model_kwargs = {**defaults, **kwargs}

    what = f"weights {name}" + (f" ({path})" if path is not None else "")
    if checkpoint_path is not None:
        what = f"checkpoint {path}"
    if path is None:
        model = builder(**model_kwargs)
    else:
        with empty_init():
            model = builder(**model_kwargs)
    _check_against_model(model, arch, info, what)
    if path is not None:
        adapt = {"adapt_head": "num_classes" in kwargs, "adapt_in_chans": "in_chans" in kwargs}
        _load_into(model, load_file(path), what, **adapt, stacklevel=5, path=path, allow_nonfinite=allow_nonfinite)
    model.pretrained_cfg = _cfg_with(model, arch, tag, info, labels, extra)
    return model


def human_size(size: int | None) -> str:
    if size is None:
        return "unknown"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{size} B"
        value /= 1024
    return f"{size} B"


def _source_lines(name: str, entry: manifest.WeightsEntry) -> list[str]:
    """One line per source, in the order they are tried, with what the manifest pins of each."""
    lines = []
    for i, source in enumerate(manifest.resolve_sources(entry)):
        label = "source" if i == 0 else "else"
        lines.append(f"    {label:<12} {manifest.describe(source)}")
        if not source.third_party:
            continue
        if source.pinned:
            at = f"commit {source.revision}, " if source.type == "hub" else ""
            lines.append(f"    {'':<12} pinned in the manifest: {at}sha256 {source.sha256}")
        else:
            how = "the Hub's SHA-256 (X-Linked-Etag)" if source.type == "hub" else "the hash prefix in its name"
            lines.append(f"    {'':<12} not pinned in the manifest: checked against {how}, then pinned on this host")
    return lines


def describe_weights(name: str) -> str:
    """Text describing the weights of ``name`` (an arch: all its tags; ``arch.tag``: that one); "" if none."""
    arch, _, tag = name.partition(".")
    entries = manifest.entries_for_arch(arch)
    if tag:
        entries = {tag: entries[tag]} if tag in entries else {}
    if not entries:
        return ""
    try:
        default = manifest.default_tag(arch)
    except ValueError:
        default = None
    lines = ["pretrained weights:"]
    for t, e in entries.items():
        full = f"{arch}.{t}"
        metrics = e.metrics or {}
        origin = e.origin or {}
        c, h, w = e.input_size
        size = f"    size         {human_size(e.size)}" + (f" ({e.size:,} bytes)" if e.size else "")
        lines += [
            f"  {full}{'  (default)' if t == default else ''}",
            f"    status       {e.status}",
            *_source_lines(full, e),
            *([f"    sha256       {e.sha256}", size] if e.sha256 or not e.published else []),
            f"    on this host {cached_state(full)}",
            f"    dataset      {e.dataset or 'unknown'}, {e.num_classes} classes",
            f"    input        {c} x {h} x {w}, {e.interpolation}, crop_pct {e.crop_pct:.4g}",
            f"    mean / std   {tuple(e.mean)} / {tuple(e.std)}",
        ]
        if metrics:
            top = ", ".join(f"{k} {metrics[k]:.3f}%" for k in ("top1", "top5") if metrics.get(k) is not None)
            on = f" on the {metrics['eval_set']}" if metrics.get("eval_set") else ""
            by = f" (measured by {metrics['measured_by']})" if metrics.get("measured_by") else ""
            lines.append(f"    metrics      {top or 'none'}{on}{by}")
            if metrics.get("command"):
                lines.append(f"    measured by  {metrics['command']}")
        lines.append(f"    license      {e.license or 'unknown'}")
        if origin.get("command"):
            lines.append(f"    produced by  {origin['command']}")
        for key in ("upstream", "hf_hub", "url", "recipe"):
            if origin.get(key):
                lines.append(f"    {key:<12} {origin[key]}")
    return "\n".join(lines)


def expand_names(names: list[str]) -> list[str]:
    """Weights names for arguments that are an arch (its default tag), ``arch.tag`` or an fnmatch pattern."""
    known = manifest.weight_names()
    out: list[str] = []
    for name in names:
        if any(c in name for c in "*?["):
            matches = [n for n in known if fnmatch.fnmatchcase(n, name)]
            if not matches:
                raise ManifestError(f"no weights match {name!r}; `zoo list --pretrained` lists them")
            out += matches
        else:
            arch, tag = resolve_name(name)
            out.append(f"{arch}.{tag}")
    return list(dict.fromkeys(out))
