"""``create_model`` and ``list_models``: from a name (``arch`` or ``arch.tag``) to a ready model."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch.nn as nn

from zoo.errors import ArgumentValueError, ModelArgumentError, WeightsFileError
from zoo.models import FeatureGetterNet, parametric_entrypoint
from zoo.registry import filter_names, is_model, list_archs, model_entrypoint, split_model_name_tag
from zoo.utils import gc_paused
from zoo.utils.checks import MAX_INPUT_SIDE, Invalid, int_in, reported


def list_models(
    filter: str | Iterable[str] = "",  # noqa: A002 - the name users know from timm
    exclude_filters: str | Iterable[str] = (),
    pretrained: bool = False,
) -> list[str]:
    """Registered names in natural order matching a ``filter`` pattern (fnmatch; a list: any of them) and no
    ``exclude_filters`` one; with ``pretrained=True`` every ``arch.tag`` with weights in the manifest."""
    if not pretrained:
        return list_archs(filter, exclude_filters)
    from zoo.pretrained import manifest

    names = (n for n in manifest.weight_names() if is_model(n))
    return filter_names(names, filter, exclude_filters)


def create_model(
    model_name: str,
    pretrained: bool = False,
    checkpoint_path: str | None = None,
    pretrained_cfg_overlay: dict[str, Any] | None = None,
    features_only: bool = False,
    out_indices: int | Sequence[int] | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build a registered model, optionally with weights, as timm's ``create_model``.

    ``model_name`` is ``arch`` or ``arch.tag`` (a set of weights of the manifest); ``pretrained`` loads the
    manifest's weights (the arch's default without a tag), verified; ``checkpoint_path`` a local safetensors file
    instead. ``pretrained_cfg_overlay`` replaces entries of ``pretrained_cfg`` before the build, as in timm (its
    ``num_classes``/``input_size`` are builder defaults, its ``file``/``hf_hub_id`` where pretrained weights come
    from). ``features_only`` returns the stage feature maps (``out_indices`` picks them), described by
    ``feature_info``. ``kwargs``: torchvision's ``weights`` (a :class:`zoo.weights.Weights`, ``"arch.tag"``, a tag or
    ``"DEFAULT"``), timm's ``img_size`` (a side or (height, width) for ``pretrained_cfg``), and the builder's
    arguments (``num_classes``, ``in_chans``, ``stem``, ``global_pool``, ...); a ``num_classes`` or ``in_chans``
    other than the weights' adapts them (a new head, the first convolution summed or repeated). A model built
    without weights describes its default weights' preprocessing, as in timm."""
    img_size = _img_size(kwargs.pop("img_size", None))
    if pretrained_cfg_overlay:
        # As in timm, the overlay is resolved before the build: its classes and channels are the builder's
        # defaults, and a file or Hub repo it names is where pretrained weights come from.
        overlay = pretrained_cfg_overlay
        if overlay.get("num_classes") is not None:
            kwargs.setdefault("num_classes", overlay["num_classes"])
        if overlay.get("input_size"):
            kwargs.setdefault("in_chans", overlay["input_size"][0])
        if pretrained and overlay.get("file") and not checkpoint_path:
            checkpoint_path = str(overlay["file"])
        elif pretrained and overlay.get("hf_hub_id") and not checkpoint_path:
            model_name = f"hf-hub:{overlay['hf_hub_id']}"
    if isinstance(model_name, str) and model_name.startswith(("local-dir:", "hf-hub:")):
        arch, model = _create_from_folder(model_name, pretrained, checkpoint_path, kwargs)
        return _finish(model, arch, pretrained_cfg_overlay, features_only, out_indices, img_size)
    arch, tag = split_model_name_tag(model_name)
    if kwargs.get("weights") is not None:
        tag, pretrained = _weights_tag(arch, tag, kwargs.pop("weights")), True
    kwargs.pop("weights", None)  # weights=None: torchvision's "no weights"
    for flag in ("scriptable", "exportable", "no_jit"):  # timm's layer switches: zoo's layers need none of them
        kwargs.pop(flag, None)
    # Names such as ``cifar_resnet50`` describe their parameters and are built without being registered.
    builder = (None if is_model(arch) else parametric_entrypoint(arch)) or model_entrypoint(arch)
    if pretrained or checkpoint_path or tag:
        with gc_paused():
            from zoo.pretrained import load

            model = load.build_with_weights(
                arch, tag, builder, kwargs, pretrained=pretrained, checkpoint_path=checkpoint_path
            )
    else:
        model = builder(**kwargs)  # its family's cfg describes its default weights' preprocessing, as in timm
    return _finish(model, arch, pretrained_cfg_overlay, features_only, out_indices, img_size)


def _finish(
    model: nn.Module,
    arch: str,
    overlay: dict[str, Any] | None,
    features_only: bool,
    out_indices: int | Sequence[int] | None,
    img_size: tuple[int, int] | None,
) -> nn.Module:
    """``img_size`` and the overlay on ``pretrained_cfg``, then ``features_only``'s wrapper."""
    if img_size is not None:
        from zoo.models.base import with_input_size

        model.pretrained_cfg = with_input_size(model, model.pretrained_cfg, *img_size)
    if overlay:
        model.pretrained_cfg = {**model.pretrained_cfg, **overlay}
    if features_only:
        if not hasattr(model, "forward_intermediates"):
            raise ArgumentValueError(f"{arch} has no forward_intermediates(), so features_only=True cannot be used")
        model = FeatureGetterNet(model, out_indices)
    elif out_indices is not None:
        raise ArgumentValueError("out_indices only applies with features_only=True")
    return model


def _img_size(value: Any) -> tuple[int, int] | None:
    """timm's ``img_size`` (a side or (height, width)) as (height, width), checked."""
    if value is None:
        return None
    sides = (value, value) if not isinstance(value, (tuple, list)) else tuple(value)
    with reported("create_model", ModelArgumentError, hint="give a side in pixels, or (height, width)"):
        if len(sides) != 2:
            raise Invalid("img_size", value, "must be a side or (height, width)")
        return tuple(int_in("img_size", v, 1, MAX_INPUT_SIDE) for v in sides)  # type: ignore[return-value]


def _weights_tag(arch: str, tag: str, weights: Any) -> str:
    """The tag that ``weights=`` (a Weights object, ``"arch.tag"``, a tag or ``"DEFAULT"``) names for ``arch``."""
    from zoo.pretrained import manifest

    name = getattr(weights, "name", weights)
    if not isinstance(name, str) or not name.strip(". "):  # "" is no weights' name, not the default
        raise TypeError(f"weights={weights!r}: give zoo.get_weights(...), 'arch.tag', a tag or 'DEFAULT'")
    wanted_arch, wanted = split_model_name_tag(name) if "." in name else (arch, name)
    if wanted == "DEFAULT":
        wanted = manifest.default_tag(arch) or ""
        if not wanted:
            raise ArgumentValueError(
                f"weights='DEFAULT': {arch!r} has no weights; `zoo list --pretrained` lists those that do"
            )
    if wanted_arch != arch or (tag and tag != wanted):
        raise ArgumentValueError(f"weights={name!r} are not weights of {arch + ('.' + tag if tag else '')!r}")
    return wanted


def check_model_args(arch: str, model_args: Mapping[str, Any], where: object) -> None:
    """A file's ``model_args`` are the builder's own, never create_model's (``pretrained``, ``checkpoint_path``,
    ``features_only`` ...): the builder, run on the meta device, refuses a keyword it lacks (a WeightsFileError)."""
    from zoo.pretrained.load import empty_init

    builder = (None if is_model(arch) else parametric_entrypoint(arch)) or model_entrypoint(arch)
    try:
        with empty_init():
            builder(**model_args)
    except ModelArgumentError as e:
        raise WeightsFileError(
            f"{where}: model_args: {e.args[0]}", hint="remove what its builder does not take"
        ) from None


def _create_from_folder(
    name: str, pretrained: bool, checkpoint_path: str | None, kwargs: dict[str, Any]
) -> tuple[str, nn.Module]:
    """timm's ``local-dir:PATH`` and ``hf-hub:ORG/NAME``: a folder's config.json chooses the architecture and
    preprocessing, its model.safetensors (with ``pretrained``) the weights (zoo.pretrained.fetch)."""
    from zoo.pretrained.fetch import resolve_folder

    folder = resolve_folder(name, pretrained and checkpoint_path is None)
    check_model_args(folder.arch, folder.model_args, f"{name}: its config.json")
    builder = model_entrypoint(folder.arch)
    args = {**folder.model_args, **kwargs}
    weights = checkpoint_path or folder.weights
    if weights is None:  # timm's meaning: the folder's architecture and preprocessing, random weights
        args.pop("allow_nonfinite", None)
        model = builder(**args)
        model.pretrained_cfg = {**model.pretrained_cfg, **folder.pretrained_cfg}
    else:
        with gc_paused():
            from zoo.pretrained import load

            model = load.build_with_weights(
                folder.arch, "", builder, args, checkpoint_path=weights, folder_cfg=folder.pretrained_cfg
            )
    model.pretrained_cfg = {**model.pretrained_cfg, "source": name}
    return folder.arch, model
