"""What every zoo model shares: argument checks, the typed default config, the head API and timm's interface.

Each family keeps a ``default_cfgs`` table (architecture -> stem -> :class:`PretrainedCfg`) outside its
model class, as timm does, and names its architecture from its structure, so that a model built directly
(``ResNet(Bottleneck, [3, 4, 6, 3])``) knows it is ``resnet50``. ``model.pretrained_cfg`` stays a plain
dict, the form timm and the rest of zoo read.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar

import torch
import torch.nn as nn

from zoo.errors import ArgumentValueError, ModelArgumentError
from zoo.models.cfg import MAX_CHANNELS, PretrainedCfg
from zoo.models.features import checkpoint_units, feature_take_indices
from zoo.models.head import check_pool, make_classifier, make_pool

__all__ = [
    "MAX_NUM_CLASSES", "STEMS", "ZooModel", "build_model", "check_choice", "check_common", "family_cfgs",
    "with_input_size",
]  # fmt: skip

STEMS = ("imagenet", "cifar")
# The most classes a model may be built with: 46 times ImageNet-21k's 21,841, yet a classifier a machine can
# hold (at most 16 GB of float32, behind VGG's 4096-wide head). Like MAX_INPUT_SIDE and MAX_CHANNELS in
# zoo.models.cfg, it turns a slip (`--num-classes 1000000000`) into an error naming the limit, raised before
# anything is allocated, instead of an allocator failure.
MAX_NUM_CLASSES = 1_000_000


def check_choice(param: str, value: Any, allowed: Iterable[Any]) -> None:
    """Raise an ArgumentValueError (a ValueError) naming ``param`` and its allowed values unless ``value`` is one."""
    allowed = tuple(allowed)
    if value not in allowed:
        raise ArgumentValueError(f"{param}={value!r} is not allowed; choose one of {', '.join(map(repr, allowed))}")


def check_common(num_classes: int, in_chans: int, drop_rate: float = 0.0) -> None:
    """Check the arguments every model takes, before any layer is allocated.

    ``num_classes`` is at most ``MAX_NUM_CLASSES`` and ``in_chans`` at most ``MAX_CHANNELS``: without a bound,
    ``num_classes=10**9`` asks the allocator for a 256 GB classifier and dies with its RuntimeError.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
        raise ArgumentValueError(
            f"num_classes={num_classes!r} is invalid: use a positive int, or 0 for a model without "
            "classifier that returns pooled features"
        )
    if num_classes > MAX_NUM_CLASSES:
        raise ArgumentValueError(
            f"num_classes={num_classes} is more than {MAX_NUM_CLASSES:,}, the most classes a zoo model may have",
            hint=f"use at most {MAX_NUM_CLASSES:,} (ImageNet-21k has 21,841)",
        )
    if isinstance(in_chans, bool) or not isinstance(in_chans, int) or in_chans < 1:
        raise ArgumentValueError(f"in_chans={in_chans!r} is invalid: use an int >= 1 (1 for grey, 3 for RGB images)")
    if in_chans > MAX_CHANNELS:
        raise ArgumentValueError(
            f"in_chans={in_chans} is more than {MAX_CHANNELS}, the most input channels a zoo model may have",
            hint=f"use at most {MAX_CHANNELS} (1 for grey, 3 for RGB, a few hundred for multispectral images)",
        )
    try:
        valid = 0.0 <= float(drop_rate) < 1.0
    except (TypeError, ValueError):  # not a number (a string from `--model-arg drop_rate=...`, None)
        valid = False
    if not valid:
        raise ArgumentValueError(f"drop_rate={drop_rate!r} is invalid: use a probability in [0, 1)")


def with_input_size(model: nn.Module, cfg: Mapping[str, Any], height: int, width: int) -> dict[str, Any]:
    """``cfg`` (a pretrained_cfg of ``model``) for ``height`` x ``width`` inputs: ``input_size`` and ``pool_size``.

    A model whose ``fixed_input_size`` is set (the MNIST CNNs: their classifier is sized for one grid)
    takes no other size: asking for one is a :class:`ModelArgumentError`.
    """
    c, h, w = (int(v) for v in cfg["input_size"])
    if (height, width) == (h, w):
        return dict(cfg)
    if cfg.get("fixed_input_size"):
        raise ModelArgumentError(
            f"{cfg.get('architecture') or type(model).__name__} takes only {h}x{w} inputs (its classifier is sized "
            f"for that grid), so img_size={height if height == width else (height, width)} cannot apply; "
            f"leave img_size out or give {h}"
        )
    info = getattr(model, "feature_info", None)
    reduction = info[-1]["reduction"] if info else None
    pool_size = (math.ceil(height / reduction), math.ceil(width / reduction)) if reduction else None
    return {**cfg, "input_size": (c, height, width), "pool_size": pool_size}


def family_cfgs(archs: Iterable[str], **per_stem: PretrainedCfg) -> dict[str, dict[str, PretrainedCfg]]:
    """A family's ``default_cfgs`` table: for each architecture, the stem templates named after it."""
    return {a: {stem: dataclasses.replace(c, architecture=a) for stem, c in per_stem.items()} for a in archs}


def build_model(model_cls: type[nn.Module], arch: str, kwargs: dict[str, Any], **fixed: Any) -> nn.Module:
    """Instantiate ``model_cls`` for the registered ``arch``.

    ``fixed`` holds what the architecture name decides (depth, block, config); ``kwargs`` comes from
    the user, so a keyword the model doesn't take, or one the name already fixes, is a TypeError
    that lists what the model accepts.
    """
    params = [
        name
        for name, p in inspect.signature(model_cls.__init__).parameters.items()
        if name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]
    accepted = [p for p in params if p not in fixed]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ModelArgumentError(
            f"{arch}() got unexpected keyword argument(s) {', '.join(map(repr, unknown))}; "
            f"it accepts: {', '.join(accepted)}"
        )
    return model_cls(**fixed, **kwargs)


Stages = list[list[Callable[[torch.Tensor], torch.Tensor]]]


class ZooModel(nn.Module):
    """The interface of every zoo model, timm >= 1.0's: head API, feature taps and compile-friendly forward.

    A family sets the class attributes and, in ``__init__``, calls :meth:`_setup` first and
    :meth:`_set_default_cfg` last; it implements ``forward_features``, ``forward_head``, :meth:`_stages`
    and :meth:`_prune_stages`. ``num_features`` is the channel count of ``forward_features``' output,
    ``head_hidden_size`` the width ``forward_head(x, pre_logits=True)`` returns.

    ``global_pool`` is ``"avg"``, ``"max"``, ``"avgmax"`` (their mean) or ``""`` for no pooling. A
    global head (ResNets) pools to 1x1; without pooling it returns the feature map, so it needs
    ``num_classes=0``. A grid head (VGG, the MNIST CNNs) pools to the fixed grid its hidden layers were
    sized for (7x7 for ImageNet VGG); without pooling it flattens the map as it is, so the input must
    give exactly that grid.
    """

    # TorchScript compiles properties; this one returns a dict of mixed types it cannot type.
    __jit_unused_properties__: ClassVar[list[str]] = ["default_cfg"]

    default_cfgs: ClassVar[dict[str, dict[str, PretrainedCfg]]] = {}
    stem_cfgs: ClassVar[dict[str, PretrainedCfg]] = {}  # for structures no registered name describes
    grid_head: ClassVar[bool] = False
    pool_attr: ClassVar[str] = "avgpool"
    classifier_attr: ClassVar[str] = "fc"
    classifier_init: ClassVar[str] = "default"

    def _setup(self, num_classes: int, in_chans: int, drop_rate: float, global_pool: str, head_grid: int) -> None:
        """Check and store what every model takes; call before building layers."""
        check_common(num_classes, in_chans, drop_rate)
        check_pool(global_pool, num_classes, self.grid_head)
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.drop_rate = drop_rate
        self.global_pool = global_pool
        self.head_grid = head_grid
        self.head_flatten = self.grid_head or bool(global_pool)
        self.grad_checkpointing = False

    def _set_default_cfg(self, arch: str | None, stem: str) -> None:
        """Set ``pretrained_cfg`` from the family's table; call once ``feature_info`` is known."""
        # A name outside the table (``cifar_resnet50``) takes its stem's defaults under its own name.
        template = self.default_cfgs.get(arch or "", {}).get(stem) or self.stem_cfgs[stem]
        template = dataclasses.replace(template, architecture=arch)
        reduction = self.feature_info[-1]["reduction"]
        pool_size = tuple(math.ceil(s / reduction) for s in template.input_size[1:])
        cfg = template.for_model(self.in_chans, self.num_classes, pool_size)  # type: ignore[arg-type]
        self.pretrained_cfg = cfg.to_dict()

    @property
    def default_cfg(self) -> dict[str, Any]:
        """timm's older name for ``pretrained_cfg``."""
        return self.pretrained_cfg

    @default_cfg.setter
    def default_cfg(self, value: dict[str, Any]) -> None:
        self.pretrained_cfg = value

    def _init_weights(self, zero_init_last: type[nn.Module] | tuple[type[nn.Module], ...] = ()) -> None:
        """torchvision's initialisation, so that training from scratch behaves as it does there.

        He-normal (fan-out) convolutions with zero bias, unit batch and group norms and, for models whose
        ``classifier_init`` is ``"normal"`` (VGG), N(0, 0.01) Linear layers. Blocks of the ``zero_init_last``
        types start with their last norm at zero, so each starts as the identity (Goyal et al., 2017).
        """
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0)
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.Linear) and self.classifier_init == "normal":
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.constant_(m.bias, 0)
        # A second pass: the first visits each block before the norms inside it.
        for m in self.modules():
            if zero_init_last and isinstance(m, zero_init_last):
                m.zero_init_last()

    # ---- head -----------------------------------------------------------------------------------------

    def _new_classifier(self, num_classes: int) -> nn.Module:
        return make_classifier(self.head_hidden_size, num_classes, self.classifier_init)

    def get_classifier(self) -> nn.Module:
        """The final layer (Linear, or Identity when ``num_classes == 0``)."""
        return getattr(self, self.classifier_attr)

    def _replace_classifier(self, module: nn.Module) -> None:
        setattr(self, self.classifier_attr, module)

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """A fresh final layer for ``num_classes`` (0 removes it), and another pooling if ``global_pool`` is given.

        The new layer is built on the default device, so this also initialises the head of a model
        built on the meta device.
        """
        pool = self.global_pool if global_pool is None else global_pool
        check_common(num_classes, self.in_chans)
        check_pool(pool, num_classes, self.grid_head)
        if pool != self.global_pool:
            setattr(self, self.pool_attr, make_pool(pool, self.head_grid))
            self.global_pool = pool
            self.head_flatten = self.grid_head or bool(pool)
        self.num_classes = num_classes
        self._replace_classifier(self._new_classifier(num_classes))
        self.pretrained_cfg = {**self.pretrained_cfg, "num_classes": num_classes, "label_names": None}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    # ---- timm's training hooks --------------------------------------------------------------------------

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each stage's activations in backward instead of storing them (in training mode only).

        Batch norm layers then see every batch twice, so their running statistics move twice as fast.
        """
        self.grad_checkpointing = bool(enable)

    def no_weight_decay(self) -> set[str]:
        """Parameter names to keep out of weight decay (none beyond timm's own 1-d rule)."""
        return set()

    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        """Regexes grouping parameter names into stem and blocks, for layer-wise learning-rate decay."""
        raise NotImplementedError

    # ---- feature maps -----------------------------------------------------------------------------------

    def _stages(self) -> Stages:
        """One list of callables per ``feature_info`` entry; running them in order is ``forward_features``."""
        raise NotImplementedError

    def _prune_stages(self, last: int) -> None:
        """Drop every layer after stage ``last``."""
        raise NotImplementedError

    def _remove_head(self) -> None:
        """No pooling, no hidden layers, no classifier: ``forward_head`` returns the feature map."""
        setattr(self, self.pool_attr, nn.Identity())
        self.global_pool = ""
        self.head_flatten = False
        self.num_classes = 0
        self.head_hidden_size = self.num_features
        self._replace_classifier(nn.Identity())

    def _forward_checkpointed(self, x: torch.Tensor) -> torch.Tensor:
        for units in self._stages():
            x = checkpoint_units(units, x)
        return x

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | Sequence[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """``forward_features`` that also returns the stage outputs ``feature_info`` describes.

        Args:
            indices: the last n stages if an int, all if None, else these (negative from the end).
            norm: accepted for timm's signature; no zoo model has a final norm.
            stop_early: stop after the last stage asked for (the final output is then that stage's).
            output_fmt: only ``"NCHW"``.
            intermediates_only: return only the list of stage outputs.
        """
        if output_fmt != "NCHW":
            raise ArgumentValueError(f"output_fmt={output_fmt!r} is not supported; zoo models give 'NCHW' feature maps")
        stages = self._stages()
        take, max_index = feature_take_indices(len(stages), indices)
        checkpointed = self.grad_checkpointing and self.training
        intermediates = []
        for i, units in enumerate(stages[: max_index + 1] if stop_early else stages):
            if checkpointed:
                x = checkpoint_units(units, x)
            else:
                for unit in units:
                    x = unit(x)
            if i in take:
                intermediates.append(x)
        return intermediates if intermediates_only else (x, intermediates)

    def prune_intermediate_layers(
        self, indices: int | Sequence[int] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        """Remove the layers the stages ``indices`` do not need (and the head); returns the kept indices."""
        take, max_index = feature_take_indices(len(self.feature_info), indices)
        prune_end = max_index < len(self.feature_info) - 1
        self._prune_stages(max_index)
        if prune_end:
            # The head was sized for the last stage, so it goes with it.
            self.num_features = self.feature_info[max_index]["num_chs"]
        if prune_head or prune_end:
            self._remove_head()
        return take
