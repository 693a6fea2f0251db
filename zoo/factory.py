"""``create_model`` and ``list_models``: from a name (``arch`` or ``arch.tag``) to a ready model."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch.nn as nn

from zoo.registry import filter_names, list_archs, model_entrypoint, registered, split_model_name_tag

__all__ = ["create_model", "list_models"]


def list_models(
    filter: str | Iterable[str] = "",  # noqa: A002 - the name users know from timm
    exclude_filters: str | Iterable[str] = (),
    pretrained: bool = False,
) -> list[str]:
    """Registered names in natural order that match a ``filter`` pattern and no ``exclude_filters`` one.

    Patterns are ``fnmatch`` style (``"resnet*"``); a list matches when any of its patterns does.

    With ``pretrained=True`` the names are ``arch.tag`` for every set of weights in the manifest
    whose architecture is registered.
    """
    if not pretrained:
        return list_archs(filter, exclude_filters)
    from zoo.hub import manifest

    archs = registered()
    names = (n for n in manifest.weight_names() if split_model_name_tag(n)[0] in archs)
    return filter_names(names, filter, exclude_filters)


def create_model(
    model_name: str,
    pretrained: bool = False,
    checkpoint_path: str | None = None,
    pretrained_cfg_overlay: dict[str, Any] | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build a registered model, optionally with weights.

    Args:
        model_name: ``arch`` (``"resnet50"``) or ``arch.tag`` (``"resnet50.tv2_in1k"``); the tag picks
            a set of weights from the manifest, and without a tag ``pretrained=True`` takes the arch's
            default weights.
        pretrained: load the manifest's weights (downloaded and verified, or bundled).
        checkpoint_path: load this local safetensors file instead.
        pretrained_cfg_overlay: entries that replace those of the model's ``pretrained_cfg``.
        **kwargs: passed to the builder (``num_classes``, ``in_chans``, ``stem``, ...). A
            ``num_classes`` or ``in_chans`` that differs from the weights adapts them (new head, or
            first conv summed/repeated).
    """
    arch, tag = split_model_name_tag(model_name)
    builder = model_entrypoint(arch)
    if pretrained or checkpoint_path or tag:
        from zoo.hub import load

        model = load.build_with_weights(
            arch, tag, builder, kwargs, pretrained=pretrained, checkpoint_path=checkpoint_path
        )
    else:
        model = builder(**kwargs)
    if pretrained_cfg_overlay:
        model.pretrained_cfg = {**model.pretrained_cfg, **pretrained_cfg_overlay}
    return model
