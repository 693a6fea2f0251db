"""Loading weights into a model: built on the meta device around the memory-mapped file (``assign=True``), the state
dict checked key by key, shape by shape and dtype by dtype, a classifier or first convolution adapted when asked.
"""

from __future__ import annotations

import fnmatch
import os
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from torch.overrides import TorchFunctionMode

from zoo.errors import ManifestError, WeightsError, WeightsFileError
from zoo.models.cfg import check_preprocessing, fit_channels, without_source
from zoo.pretrained import manifest
from zoo.pretrained.cache import mark, marked
from zoo.pretrained.fetch import fetch, fetch_file
from zoo.pretrained.files import WeightsMetadata, load_file, strip_wrapper_prefix
from zoo.pretrained.manifest import WeightsEntry

_MAX_LISTED = 12
_TIMM_VGG_HEAD = {"pre_logits.fc1.": "classifier.0.", "pre_logits.fc2.": "classifier.3.", "head.fc.": "classifier.6."}


def from_timm_layout(state_dict: Mapping[str, torch.Tensor]) -> Mapping[str, torch.Tensor]:
    """timm's VGG layout -> torchvision's (zoo's), any other state dict as it is: timm's classifier is a 7x7 conv
    (the Linear over the flattened 512x7x7 map), a 1x1 conv and ``head.fc``, so each weight is a view (nothing is
    copied; a memory-mapped file stays mapped)."""
    if "pre_logits.fc1.weight" not in state_dict:
        return state_dict
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        old = next((o for o in _TIMM_VGG_HEAD if key.startswith(o)), None)
        if old is not None:
            key = _TIMM_VGG_HEAD[old] + key[len(old) :]
            value = value.view(value.shape[0], -1) if key.endswith("weight") and value.dim() == 4 else value
        out[key] = value
    return out


def adapt_input_conv(weight: torch.Tensor, in_chans: int) -> torch.Tensor:
    """A first-convolution weight ``(out, C, kh, kw)`` for ``in_chans`` channels: summed for one, else repeated and
    scaled by C/N. timm's does this from 3 channels only (grey weights on RGB images would fail)."""
    channels = weight.shape[1]
    if in_chans == channels:
        return weight
    w = weight.float()
    out = w.sum(1, keepdim=True) if in_chans == 1 else w.repeat(1, -(-in_chans // channels), 1, 1)[:, :in_chans]
    return (out if in_chans == 1 else out * (channels / in_chans)).to(weight.dtype)


def _listing(title: str, items: list[str]) -> list[str]:
    more = [f"    ... and {len(items) - _MAX_LISTED} more"] if len(items) > _MAX_LISTED else []
    return [f"  {title} ({len(items)}):", *(f"    {i}" for i in items[:_MAX_LISTED]), *more] if items else []


def fit_state_dict(
    model: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    what: str,
    adapt_head: bool,
    adapt_in_chans: bool,
    stacklevel: int,
    adapt_stem: bool = False,
) -> tuple[dict[str, torch.Tensor], bool]:
    """``state_dict`` checked against ``model`` key by key, shape and dtype, adapted where allowed; returns it and
    whether the classifier was dropped. ``adapt_in_chans``: another first-convolution channel count is adapted;
    ``adapt_head``: a classifier of another size is left out; ``adapt_stem``: a first convolution of another kernel
    and a head of other shapes are left out. Each adaptation warns naming the keys; anything else that does not
    fit is one error listing every key (``missing``, ``unexpected``, ``mismatched``)."""
    expected = {k: (tuple(v.shape), v.dtype) for k, v in model.state_dict().items()}
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    sd = dict(state_dict)
    conv = f"{cfg.get('first_conv')}.weight"
    have = sd[conv].shape if conv in sd else None
    want = expected[conv][0] if conv in expected else None
    if adapt_in_chans and have and want and len(have) == len(want) == 4 and have[1] != want[1]:
        sd[conv] = adapt_input_conv(sd[conv], want[1])
        how = "summed over" if want[1] == 1 else f"repeated and scaled by {have[1]}/{want[1]} from"
        warnings.warn(
            f"{what}: {conv} adapted from {have[1]} to {want[1]} input channels ({how} the original channels)",
            stacklevel=stacklevel,
        )
    fresh: set[str] = set()  # the model's keys left as initialised

    def drop(ours: Callable[[str], bool], message: str) -> None:
        for k in [k for k in sd if ours(k)]:
            del sd[k]
        fresh.update(k for k in expected if ours(k))
        warnings.warn(f"{what}: {message}", stacklevel=stacklevel + 1)

    if adapt_stem and have and want and have[2:] != want[2:]:
        shapes = f"a {'x'.join(map(str, have[2:]))} kernel, the model's stem {'x'.join(map(str, want[2:]))}"
        drop(lambda k: k == conv, f"{conv} is freshly initialised: the weights' first convolution has {shapes}")
    # VGG's CIFAR stem also ends in its own head (512 wide, not 25088 -> 4096 -> 4096): keep none of it.
    prefix = (cfg.get("classifier") or "").rpartition(".")[0] + "."
    differ = [k for k in sd if k.startswith(prefix) and expected.get(k, (0,))[0] != sd[k].shape]
    if adapt_stem and prefix != "." and differ:
        dropped = ", ".join([k for k in sd if k.startswith(prefix)][:4])
        drop(lambda k: k.startswith(prefix), f"the model's {prefix[:-1]} is freshly initialised ({dropped} differ)")
    head = cfg.get("classifier")
    head_keys = sorted((k for k in sd if head and k.rsplit(".", 1)[0] == head), key=lambda k: (k.endswith("bias"), k))
    head_differs = any(expected.get(k, (0,))[0] != tuple(sd[k].shape) for k in head_keys)
    head_dropped = adapt_head and head_differs
    if head_dropped:
        old, new = sd[head_keys[0]].shape[0], getattr(model, "num_classes", "?")
        fate = "the model has no classifier" if new == 0 else f"the model's {head} is freshly initialised"
        keys = ", ".join(head_keys)
        message = f"dropped the classifier keys {keys} (the weights have {old} classes, the model {new}); {fate}"
        drop(lambda k: k.rsplit(".", 1)[0] == head, message)
    missing = [k for k in expected if k not in sd and k not in fresh]
    unexpected = [k for k in sd if k not in expected]
    mismatched = [
        f"{k}: weights {tuple(v.shape)}, model {expected[k][0]}"
        for k, v in sd.items()
        if k in expected and tuple(v.shape) != expected[k][0]
    ]
    if missing or unexpected or mismatched:
        hints = []
        if head_differs and not head_dropped:
            hints.append(
                f"the classifier differs: pass num_classes={getattr(model, 'num_classes', 'N')} to "
                "create_model to replace it (or load_weights(..., adapt=True))"
            )
        if conv in sd and want and sd[conv].dim() == 4 and sd[conv].shape[1] != want[1]:
            hints.append("the input channels differ: pass in_chans explicitly to adapt the first convolution")
        hints = hints or ["the file was saved from another architecture or configuration (e.g. stem, depth)"]
        lines = [
            f"{what} does not fit {type(model).__name__}:",
            *_listing("shape mismatch", mismatched),
            *_listing("missing from the weights", missing),
            *_listing("unexpected in the weights", unexpected),
            *(f"  hint: {h}" for h in hints),
        ]
        error = WeightsError("\n".join(lines))
        error.missing, error.unexpected, error.mismatched = missing, unexpected, [m.split(":")[0] for m in mismatched]  # type: ignore[attr-defined]
        raise error
    # assign=True keeps the file's dtype: floating point takes the model's; an integer tensor is never cast, as that
    # would change its values or meaning without a word (a step counter, an index table).
    wrong = []
    for k, t in sd.items():
        dtype = expected[k][1]
        if t.dtype != dtype and t.is_floating_point() and dtype.is_floating_point:
            sd[k] = t.to(dtype)
        elif t.dtype != dtype:
            wrong.append(f"{k}: weights {t.dtype}, model {dtype}")
    if wrong:
        lines = [f"{what} has tensors of another type than {type(model).__name__}'s:", *_listing("dtype", wrong)]
        raise WeightsFileError("\n".join(lines), hint="convert them to the model's dtypes")
    return sd, head_dropped


def check_finite(state_dict: Mapping[str, torch.Tensor], what: str) -> None:
    """A :class:`WeightsFileError` naming the floating-point tensors that hold NaN or infinite values."""
    bad = [k for k, t in state_dict.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        more = f" and {len(bad) - _MAX_LISTED} more" if len(bad) > _MAX_LISTED else ""
        raise WeightsFileError(
            f"{what} holds NaN or infinite values in {', '.join(bad[:_MAX_LISTED])}{more}",
            hint="the weights are broken (a diverged run?); pass allow_nonfinite=True to load them anyway",
        )


_INIT_NAMES = """normal_ uniform_ fill_ zero_ random_ bernoulli_ exponential_ trunc_normal_ kaiming_normal_
kaiming_uniform_ xavier_normal_ xavier_uniform_ constant_ zeros_ ones_ orthogonal_ eye_ dirac_ sparse_"""
_INIT_OPS = frozenset(_INIT_NAMES.split())


class _SkipInitOnMeta(TorchFunctionMode):
    """In-place initialisation of meta tensors as a no-op: some init ops go through ``torch._refs`` on the meta
    device, whose first use imports ``torch._dynamo``, over a second of start-up for nothing."""

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
    path: Path,
    what: str,
    adapt_head: bool,
    adapt_in_chans: bool,
    stacklevel: int = 4,
    allow_nonfinite: bool = False,
) -> nn.Module:
    state_dict = load_file(path)
    # The NaN/Inf check reads every tensor (60 ms for resnet50 against 5 ms for the mapped load): paid once per
    # file, its verified marker remembers the result.
    if not allow_nonfinite and not marked(path).get("finite"):
        check_finite(state_dict, what)
        mark(path, finite=True)
    state_dict = from_timm_layout(strip_wrapper_prefix(state_dict))
    sd, head_dropped = fit_state_dict(model, state_dict, what, adapt_head, adapt_in_chans, stacklevel)
    on_meta = any(t.is_meta for t in (*model.parameters(), *model.buffers()))
    if on_meta and head_dropped:
        model.reset_classifier(model.num_classes)  # the new head, initialised for real
    model.load_state_dict(sd, strict=False, assign=on_meta)
    left = [n for n, t in (*model.named_parameters(), *model.named_buffers()) if t.is_meta]
    if left:
        raise WeightsError(f"{what}: these tensors were neither in the weights nor initialised: {', '.join(left)}")
    return model


def load_weights(
    model: nn.Module, source: str | os.PathLike[str], *, adapt: bool = False, allow_nonfinite: bool = False
) -> nn.Module:
    """Load a safetensors file (or the manifest's ``arch.tag``) into ``model``, strictly; ``adapt=True`` adapts a
    classifier of another size and a first convolution of other channels (with a warning). NaN or infinite weights
    are refused unless ``allow_nonfinite``."""
    path = Path(source)
    if not path.exists():
        name = str(source)
        if name not in manifest.load_manifest()["weights"]:
            raise FileNotFoundError(f"{source} is neither a file nor a weights name (`zoo list --pretrained`)")
        path = fetch(name)
    return _load_into(model, path, str(source), adapt, adapt, allow_nonfinite=allow_nonfinite)


def resolve_name(name: str) -> tuple[str, str]:
    """``arch.tag`` -> (arch, tag); a bare arch gives its default tag (ManifestError if it has no weights)."""
    arch, _, tag = name.partition(".")
    if tag:
        manifest.get_entry(arch, tag)
        return arch, tag
    tag = manifest.default_tag(arch)
    if tag is None:
        raise ManifestError(
            f"{arch} has no pretrained weights in the manifest",
            hint="`zoo list --pretrained` lists those that do; load your own with checkpoint_path=",
        )
    return arch, tag


def build_with_weights(
    arch: str,
    tag: str,
    builder: Callable[..., nn.Module],
    kwargs: Mapping[str, Any],
    pretrained: bool = False,
    checkpoint_path: str | os.PathLike[str] | None = None,
    folder_cfg: Mapping[str, Any] | None = None,
) -> nn.Module:
    """Build ``arch`` around weights: the manifest's ``arch.tag`` (the default tag with ``pretrained``), or a local
    ``checkpoint_path`` whose header (or ``folder_cfg``, a folder's config.json) gives preprocessing and builder
    defaults. A tag without ``pretrained`` gives its preprocessing with random weights; a ``num_classes`` or
    ``in_chans`` in ``kwargs`` other than the weights' adapts them; ``kwargs["allow_nonfinite"]`` loads NaN weights."""
    kwargs = dict(kwargs)
    allow_nonfinite = bool(kwargs.pop("allow_nonfinite", False))
    if not tag and pretrained and checkpoint_path is None:
        tag = resolve_name(arch)[1]
    entry: WeightsEntry | None = manifest.get_entry(arch, tag) if tag else None
    name = f"{arch}.{tag}" if tag else arch
    info: dict[str, Any] = entry.preprocessing() if entry else {}
    defaults: dict[str, Any] = dict(entry.model_args or {}) if entry else {}
    labels = manifest.label_names(entry) if entry else None
    extra: dict[str, Any] = {}
    path: Path | None = None
    if checkpoint_path is not None:
        path = Path(checkpoint_path)
        meta = WeightsMetadata.read(path)
        if not entry:
            try:  # the header is untrusted: every value is checked before it becomes a size or an argument
                info = check_preprocessing(folder_cfg if folder_cfg is not None else meta.pretrained_cfg or {})
            except ValueError as e:
                raise WeightsFileError(
                    f"{path}: {e}", hint="the file's metadata is damaged; fix or remove it"
                ) from None
            defaults, labels = dict(meta.model_args or {}), info.get("label_names")
        extra["file"] = str(path)
    elif pretrained:
        path, served = fetch_file(name, entry=entry)
        extra.update(file=str(path), **({"source": served.describe()} if served else {}))
    if entry:  # timm's keys: the first Hub repo and the first URL among the sources
        sources = [s.resolved() for s in entry.sources]
        hub = next((s for s in sources if s.type == "hub"), None)
        url = next((s.url for s in sources if s.type == "url"), None)
        extra.update(
            sha256=entry.sha256, **({"hf_hub_id": hub.repo_id, "hf_hub_filename": hub.filename} if hub else {})
        )
        extra.update({"url": url} if url else {})
    if info.get("num_classes") is not None:
        defaults["num_classes"] = info["num_classes"]
    if info.get("input_size"):
        defaults["in_chans"] = info["input_size"][0]
    what = f"checkpoint {path}" if checkpoint_path is not None else f"weights {name}" + (f" ({path})" if path else "")
    with empty_init() if path is not None else nullcontext():  # a file fills the model: built on the meta device
        model = builder(**{**defaults, **kwargs})
    check_preprocessing(info, what, WeightsFileError, model_cfg=model.pretrained_cfg)  # with the model's it will make
    if path is not None:
        _load_into(model, path, what, "num_classes" in kwargs, "in_chans" in kwargs, 5, allow_nonfinite)
    # The model's pretrained_cfg takes the preprocessing and class names of its weights.
    cfg = dict(model.pretrained_cfg)
    same_head = model.num_classes == info.get("num_classes")
    cfg.update({k: info[k] for k in ("interpolation", "crop_pct", "crop_mode", "dataset", "license") if info.get(k)})
    if info.get("input_size"):
        cfg["input_size"] = (model.in_chans, *tuple(info["input_size"])[1:])
    for key in ("mean", "std"):
        if info.get(key):
            cfg[key] = fit_channels(tuple(info[key]), model.in_chans)
    cfg.update(
        architecture=arch,
        tag=tag or None,
        num_classes=model.num_classes,
        label_names=tuple(labels) if same_head and labels else None,
        **extra,
    )
    # A new head is no longer the weights of that file.
    model.pretrained_cfg = without_source(cfg) if not same_head and info.get("num_classes") is not None else cfg
    return model


def expand_names(names: list[str]) -> list[str]:
    """Weights names for arguments that are an arch (its default tag), ``arch.tag`` or an fnmatch pattern."""
    known, out = manifest.weight_names(), []
    for name in names:
        if any(c in name for c in "*?["):
            matches = [n for n in known if fnmatch.fnmatchcase(n, name)]
            if not matches:
                raise ManifestError(f"no weights match {name!r}", hint="`zoo list --pretrained` lists them")
            out += matches
        else:
            out.append(".".join(resolve_name(name)))
    return list(dict.fromkeys(out))
