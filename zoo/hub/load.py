"""Loading pretrained weights: build a model around them fast, load and adapt them.

``create_model(name, pretrained=True)`` ends up in :func:`build_with_weights`: the model is built on the
meta device without initialising anything, the verified safetensors file is memory-mapped and its
tensors become the parameters (``load_state_dict(assign=True)``). Only a new classifier, if one is
asked for, is initialised for real.

Only safetensors files are loaded. Pickle checkpoints (``.pth``/``.pt``/``.bin``) can run code when
read, so they are refused here and read only by ``zoo convert`` (with ``torch.load(weights_only=True)``).
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from torch.overrides import TorchFunctionMode

from zoo.errors import ManifestError, WeightsError, WeightsFileError
from zoo.hub import manifest
from zoo.hub.entry import WeightsEntry
from zoo.hub.fetch import fetch, fetch_file
from zoo.hub.fitting import adapt_input_conv, check_finite, fit_state_dict, from_timm_layout
from zoo.hub.pickles import strip_wrapper_prefix
from zoo.hub.verify import mark_finite, marked_finite
from zoo.models.base import fit_channels, with_input_size

__all__ = [
    "adapt_input_conv",
    "build_with_weights",
    "default_weights_cfg",
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
    """Refuse pickle checkpoints, folders and anything else that is not a safetensors file."""
    if path.is_dir():
        raise WeightsFileError(f"{path} is a folder, not a safetensors file", hint="give the .safetensors file in it")
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
        raise WeightsFileError(
            f"{path} is a pickle checkpoint (torch.save format); zoo loads only safetensors files, because "
            "unpickling a file can run arbitrary code",
            hint=f"convert it once with `zoo convert checkpoint {path} --model ARCH` (it reads tensors only, with "
            "torch.load(weights_only=True)) and load the .safetensors file it writes; torchvision and timm weights "
            "have `zoo convert torchvision` and `zoo convert timm`",
        )
    raise WeightsFileError(
        f"{path} is not a safetensors file (its header is not a safetensors header)",
        hint="give a .safetensors file written by zoo, timm or safetensors.torch.save_file",
    )


def _broken(path: Path, error: Exception) -> WeightsFileError:
    return WeightsFileError(
        f"{path} is not a valid safetensors file: {error}", hint="the file is damaged or was not written by safetensors"
    )


def load_file(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file, memory-mapped (pickle files are refused)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file as _load

    path = Path(path)
    _check_safetensors(path)
    try:
        return _load(path)
    except (SafetensorError, OverflowError, ValueError) as e:
        raise _broken(path, e) from None


def read_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The string metadata stored in a safetensors file's header."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    _check_safetensors(path)
    try:
        with safe_open(path, framework="pt") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OverflowError, ValueError) as e:
        raise _broken(path, e) from None


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


# ------------------------------------------------------------------------------------ create_model


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
        from zoo.hub.metadata import without_source

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
        from zoo.hub.metadata import WeightsMetadata, check_preprocessing  # only checkpoints carry it

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
