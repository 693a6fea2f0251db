"""Feature maps for detection and segmentation: timm's stage-index rules, ``feature_info`` and the
``features_only`` wrapper, without importing timm (``import zoo`` stays light)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint

from zoo.errors import ArgumentValueError

__all__ = ["FeatureGetterNet", "FeatureInfo", "checkpoint_units", "feature_take_indices"]


def feature_take_indices(num_features: int, indices: int | Sequence[int] | None = None) -> tuple[list[int], int]:
    """Absolute stage indices to take and the largest, as timm reads ``indices``.

    None takes every stage, an int n the last n, a sequence these (negative ones count from the end).
    """
    if indices is None:
        indices = num_features
    if isinstance(indices, int):
        if not 0 < indices <= num_features:
            raise ArgumentValueError(
                f"indices={indices} asks for the last {indices} stages; this model has 1 to {num_features}"
            )
        take = list(range(num_features - indices, num_features))
    else:
        take = []
        for i in indices:
            idx = num_features + i if i < 0 else i
            if not 0 <= idx < num_features:
                raise ArgumentValueError(
                    f"feature index {i} is out of range: this model has stages 0 to {num_features - 1}"
                )
            take.append(idx)
        if not take:
            raise ArgumentValueError("indices is empty: name at least one stage")
    return take, max(take)


def checkpoint_units(units: Sequence[Callable[[torch.Tensor], torch.Tensor]], x: torch.Tensor) -> torch.Tensor:
    """Run ``units`` in order, each under activation checkpointing (recomputed in backward)."""
    for unit in units:
        x = checkpoint(unit, x, use_reentrant=False)
    return x


class FeatureInfo:
    """The ``feature_info`` of a ``features_only`` model: one dict per returned map (timm's class, in short)."""

    def __init__(self, feature_info: list[dict[str, Any]], out_indices: Sequence[int]) -> None:
        self.info = [dict(feature_info[i], index=i) for i in out_indices]
        self.out_indices = tuple(out_indices)

    def get(self, key: str, idx: int | Sequence[int] | None = None) -> Any:
        """``key`` of every returned map (or of those at positions ``idx``)."""
        if idx is None:
            return [f[key] for f in self.info]
        if isinstance(idx, int):
            return self.info[idx][key]
        return [self.info[i][key] for i in idx]

    def channels(self, idx: int | Sequence[int] | None = None) -> Any:
        """Channel counts of the returned maps."""
        return self.get("num_chs", idx)

    def reduction(self, idx: int | Sequence[int] | None = None) -> Any:
        """How many input pixels one feature-map pixel spans, per returned map."""
        return self.get("reduction", idx)

    def module_name(self, idx: int | Sequence[int] | None = None) -> Any:
        """The module whose output each returned map is."""
        return self.get("module", idx)

    def __getitem__(self, item: int) -> dict[str, Any]:
        return self.info[item]

    def __len__(self) -> int:
        return len(self.info)

    def __repr__(self) -> str:
        return f"FeatureInfo({self.info})"


class FeatureGetterNet(nn.Module):
    """A model that returns the list of stage feature maps ``out_indices`` names (``features_only=True``).

    The model is pruned of the layers those stages do not need, its head included. Its layers become this
    module's own children, so parameter and ``state_dict`` names are the model's (``conv1.weight``), as in
    timm's ``features_only`` ResNets, and a backbone's weights load into the full model and back;
    ``.model`` is the pruned model itself.
    """

    def __init__(self, model: nn.Module, out_indices: int | Sequence[int] | None = None, prune: bool = True) -> None:
        super().__init__()
        take, _ = feature_take_indices(len(model.feature_info), out_indices)
        if prune:
            take = model.prune_intermediate_layers(take, prune_head=True)
        if (
            next(model.parameters(recurse=False), None) is not None
            or next(model.buffers(recurse=False), None) is not None
        ):
            raise TypeError(
                f"{type(model).__name__} keeps tensors outside its layers; FeatureGetterNet cannot adopt it"
            )
        for name, child in model.named_children():
            self.add_module(name, child)
        object.__setattr__(self, "_trunk", model)  # a plain attribute: its layers are registered once, above
        self.out_indices = tuple(take)
        self.feature_info = FeatureInfo(model.feature_info, take)
        self.pretrained_cfg = dict(getattr(model, "pretrained_cfg", {}))

    @property
    def model(self) -> nn.Module:
        """The pruned model whose ``forward_intermediates`` this module runs (its layers are this module's)."""
        return self._trunk

    def train(self, mode: bool = True) -> FeatureGetterNet:
        super().train(mode)
        self._trunk.training = mode  # the trunk's own flag gates e.g. gradient checkpointing
        return self

    @property
    def default_cfg(self) -> dict[str, Any]:
        """timm's older name for ``pretrained_cfg``."""
        return self.pretrained_cfg

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self._trunk.forward_intermediates(
            x, indices=list(self.out_indices), stop_early=True, intermediates_only=True
        )
