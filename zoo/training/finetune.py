"""Models to train: from scratch, or fine-tuned from published weights with either stem (``zoo train resnet18
--stem cifar --pretrained``: every tensor but the 7x7 first convolution, which the 3x3 CIFAR stem replaces)."""

from __future__ import annotations

from typing import Any

import torch.nn as nn

from zoo.errors import ArgumentValueError
from zoo.factory import create_model
from zoo.pretrained.load import fit_state_dict
from zoo.registry import split_model_name_tag


def build_training_model(
    name: str, pretrained: bool = False, checkpoint_path: str | None = None, **kwargs: Any
) -> nn.Module:
    """``create_model(name, pretrained=pretrained, **kwargs)``, where ``stem`` may differ from the weights' (all but the
    first convolution is kept), or from a local ``checkpoint_path`` (``--initial-checkpoint``)."""
    if checkpoint_path is not None:
        if pretrained:
            raise ArgumentValueError(
                "give --pretrained or --initial-checkpoint FILE, not both: they name the starting weights"
            )
        return create_model(name, checkpoint_path=checkpoint_path, **kwargs)
    stem = kwargs.pop("stem", None)
    if not pretrained:
        return create_model(name, **kwargs, **({"stem": stem} if stem else {}))
    weights = create_model(name, pretrained=True, **kwargs)  # with the weights' own stem
    if stem is None or getattr(weights, "stem", None) == stem:
        return weights
    if not hasattr(weights, "stem"):
        return create_model(name, pretrained=True, stem=stem, **kwargs)  # the builder's own error for `stem`

    model = create_model(split_model_name_tag(name)[0], stem=stem, **kwargs)
    what = f"weights {name} ({weights.stem} stem)"
    state, _ = fit_state_dict(model, weights.state_dict(), what, False, False, stacklevel=3, adapt_stem=True)
    model.load_state_dict(state, strict=False)  # fit_state_dict checked that only the first conv is left out
    # The model's own input size (its stem's), with the normalisation the weights were trained with.
    model.pretrained_cfg = {**model.pretrained_cfg, **{k: weights.pretrained_cfg[k] for k in ("mean", "std")}}
    return model
