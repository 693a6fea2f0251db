"""What every zoo model shares: argument checks, the head, the default config and timm's interface. timm is
imported only inside what needs it (feature maps, ``"avgmax"`` pooling): importing it takes seconds."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint

from zoo.errors import ModelArgumentError
from zoo.models.cfg import PretrainedCfg, fit_channels
from zoo.registry import register_model
from zoo.utils import checks
from zoo.utils.checks import MAX_CHANNELS, MAX_NUM_CLASSES, Invalid

STEMS = ("imagenet", "cifar")
POOL_TYPES = ("avg", "max", "avgmax", "")
Stages = list[list[Callable[[torch.Tensor], torch.Tensor]]]

_HINTS = {
    "num_classes": f"give 0 (no classifier: pooled features) to {MAX_NUM_CLASSES:,}; ImageNet-21k has 21,841 classes",
    "in_chans": "1 for grey, 3 for RGB, a few hundred for multispectral images",
    "drop_rate": "a probability such as 0.2",
}


def check_common(num_classes: int, in_chans: int, drop_rate: float = 0.0) -> None:
    """Check what every model takes before a layer is allocated: ``num_classes=10**9`` would ask for 256 GB."""
    try:
        checks.int_in("num_classes", num_classes, 0, MAX_NUM_CLASSES)
        checks.int_in("in_chans", in_chans, 1, MAX_CHANNELS)
        checks.number_in("drop_rate", drop_rate, 0.0, below=1.0)
    except Invalid as e:
        e.hint = _HINTS[e.name]  # the command line prints what to do after the error
        raise


def check_pool(global_pool: str, num_classes: int, grid_head: bool) -> None:
    """``global_pool`` must be a pooling type this head can use with ``num_classes``."""
    checks.one_of("global_pool", global_pool, POOL_TYPES)
    if global_pool == "" and num_classes > 0 and not grid_head:
        must = f"is a feature map, which a {num_classes}-class Linear cannot take: use num_classes=0 or a pooling type"
        raise Invalid("global_pool", global_pool, must)


def make_pool(global_pool: str, output_size: int) -> nn.Module:
    """torch's adaptive pooling for ``global_pool`` (timm's for ``"avgmax"``), Identity for ``""``."""
    if global_pool == "avgmax":
        from timm.layers import AdaptiveAvgMaxPool2d

        return AdaptiveAvgMaxPool2d(output_size)
    pools = {"avg": nn.AdaptiveAvgPool2d, "max": nn.AdaptiveMaxPool2d}
    return pools[global_pool]((output_size, output_size)) if global_pool else nn.Identity()


def take_indices(num_stages: int, indices: int | Sequence[int] | None) -> tuple[list[int], int]:
    """timm's reading of ``indices`` (None: every stage, n: the last n, a list: these) and the largest."""
    from timm.models._features import feature_take_indices

    try:
        return feature_take_indices(num_stages, indices)
    except (AssertionError, ValueError):  # timm asserts the range; an empty list fails max()
        raise Invalid("indices", indices, f"must name stages 0 to {num_stages - 1}, or count from the end") from None


def with_input_size(model: nn.Module, cfg: Mapping[str, Any], height: int, width: int) -> dict[str, Any]:
    """``cfg`` (``model``'s pretrained_cfg) for ``height`` x ``width`` inputs; a fixed-size model takes no other."""
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


def family_cfgs(
    archs: Iterable[str], stems: Mapping[str, PretrainedCfg], weights: Mapping[str, Mapping[str, Any]]
) -> dict[str, dict[str, PretrainedCfg]]:
    """A family's ``default_cfgs``: per architecture and stem, the stem's template with what differs in the
    preprocessing of the architecture's default weights (``weights``: stem -> arch -> fields)."""
    return {
        a: {s: dataclasses.replace(c, architecture=a, **weights.get(s, {}).get(a, {})) for s, c in stems.items()}
        for a in archs
    }


def build_model(model_cls: type[nn.Module], arch: str, kwargs: dict[str, Any], **fixed: Any) -> nn.Module:
    """``model_cls(**fixed, **kwargs)``; a keyword it does not take, or that ``fixed`` (the name) fixes, is a
    ModelArgumentError (a TypeError) listing those it accepts."""
    params = inspect.signature(model_cls).parameters.items()  # __init__'s, without self
    accepted = [n for n, p in params if n not in fixed and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ModelArgumentError(
            f"{arch}() got unexpected keyword argument(s) {', '.join(map(repr, unknown))}; "
            f"it accepts: {', '.join(accepted)}"
        )
    return model_cls(**fixed, **kwargs)


def named_builder(name: str, doc: str, module: str, build: Callable[[dict[str, Any]], nn.Module]) -> Callable:
    """A builder ``name(**kwargs)`` of ``module``, as a ``@register_model`` function defined there would be."""

    def builder(**kwargs: Any) -> nn.Module:
        return build(kwargs)

    builder.__name__ = builder.__qualname__ = name
    builder.__doc__ = doc
    builder.__module__ = module
    return builder


def register_family(namespace: dict[str, Any], docs: Mapping[str, str], build: Callable[..., nn.Module]) -> None:
    """Register ``arch(**kwargs)``, ``build(arch, kwargs)``, for each ``arch: docstring`` of ``docs`` in the family
    module whose globals are ``namespace``."""
    for arch, doc in docs.items():
        builder = named_builder(arch, doc, namespace["__name__"], functools.partial(build, arch))
        namespace[arch] = register_model(builder)


class ZooModel(nn.Module):
    """timm >= 1.0's model interface. A family calls :meth:`_setup` first and :meth:`_set_default_cfg` last in
    ``__init__``, and implements ``_trunk``, ``forward_head``, ``group_matcher``, ``_stages`` (callables per
    ``feature_info`` entry) and ``_prune_stages``."""

    # TorchScript compiles properties; this one returns a dict of mixed types it cannot type.
    __jit_unused_properties__: ClassVar[list[str]] = ["default_cfg"]

    default_cfgs: ClassVar[dict[str, dict[str, PretrainedCfg]]] = {}
    stem_cfgs: ClassVar[dict[str, PretrainedCfg]] = {}  # for structures no registered name describes
    grid_head: ClassVar[bool] = False  # True: pools to the grid its hidden layers were sized for (VGG, MNIST), not 1x1
    pool_attr: ClassVar[str] = "avgpool"
    classifier_attr: ClassVar[str] = "fc"
    classifier_init: ClassVar[str] = "default"  # PyTorch's; "normal" is VGG's N(0, 0.01), "xavier" the course's

    def _setup(self, num_classes: int, in_chans: int, drop_rate: float, global_pool: str, head_grid: int) -> None:
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
        # A name outside the table (``cifar_resnet50``) takes its stem's template under its own name.
        template = self.default_cfgs.get(arch or "", {}).get(stem) or self.stem_cfgs[stem]
        reduction = self.feature_info[-1]["reduction"]
        cfg = dataclasses.replace(
            template,
            architecture=arch,
            input_size=(self.in_chans, *template.input_size[1:]),
            mean=fit_channels(template.mean, self.in_chans),
            std=fit_channels(template.std, self.in_chans),
            num_classes=self.num_classes,
            pool_size=tuple(math.ceil(s / reduction) for s in template.input_size[1:]),
        )
        self.pretrained_cfg = dataclasses.asdict(cfg)

    @property
    def default_cfg(self) -> dict[str, Any]:
        """timm's older name for ``pretrained_cfg``."""
        return self.pretrained_cfg

    @default_cfg.setter
    def default_cfg(self, value: dict[str, Any]) -> None:
        self.pretrained_cfg = value

    def _init_weights(self, zero_init_last: type[nn.Module] | tuple[type[nn.Module], ...] = ()) -> None:
        """torchvision's initialisation; blocks of the ``zero_init_last`` types start as the identity (Goyal et al.)."""
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

    def _new_classifier(self, num_classes: int) -> nn.Module:
        if num_classes == 0:
            return nn.Identity()
        fc = nn.Linear(self.head_hidden_size, num_classes)
        if self.classifier_init == "normal":
            nn.init.normal_(fc.weight, 0, 0.01)
            nn.init.constant_(fc.bias, 0)
        elif self.classifier_init == "xavier":
            nn.init.xavier_uniform_(fc.weight)
        return fc

    def get_classifier(self) -> nn.Module:
        """The final layer (Linear, or Identity when ``num_classes == 0``)."""
        return getattr(self, self.classifier_attr)

    def _replace_classifier(self, module: nn.Module) -> None:
        setattr(self, self.classifier_attr, module)

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """A new final layer for ``num_classes`` (0: none) on the default device, and ``global_pool`` if given."""
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

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last feature map, before pooling."""
        if self.grad_checkpointing and self.training and not torch.jit.is_scripting():
            for units in self._stages():
                for unit in units:
                    x = checkpoint(unit, x, use_reentrant=False)
            return x
        return self._trunk(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def _flatten(self, pooled: torch.Tensor) -> torch.Tensor:
        return torch.flatten(pooled, 1) if self.head_flatten else pooled

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each stage's activations in backward (training mode only); batch norm sees each batch twice."""
        self.grad_checkpointing = bool(enable)

    def no_weight_decay(self) -> set[str]:
        """Parameter names to keep out of weight decay (none beyond timm's own 1-d rule)."""
        return set()

    def _remove_head(self) -> None:
        """No pooling, no hidden layers, no classifier: ``forward_head`` returns the feature map."""
        setattr(self, self.pool_attr, nn.Identity())
        self.global_pool = ""
        self.head_flatten = False
        self.num_classes = 0
        self.head_hidden_size = self.num_features
        self._replace_classifier(nn.Identity())

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | Sequence[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """``forward_features`` and the stage outputs ``indices`` names (timm's signature; no zoo model has a norm)."""
        checks.one_of("output_fmt", output_fmt, ("NCHW",))
        stages = self._stages()
        take, max_index = take_indices(len(stages), indices)
        checkpointed = self.grad_checkpointing and self.training
        intermediates = []
        for i, units in enumerate(stages[: max_index + 1] if stop_early else stages):
            for unit in units:
                x = checkpoint(unit, x, use_reentrant=False) if checkpointed else unit(x)
            if i in take:
                intermediates.append(x)
        return intermediates if intermediates_only else (x, intermediates)

    def prune_intermediate_layers(
        self, indices: int | Sequence[int] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        """Remove the layers the stages ``indices`` do not need (and the head); returns the kept indices."""
        take, max_index = take_indices(len(self.feature_info), indices)
        prune_end = max_index < len(self.feature_info) - 1
        self._prune_stages(max_index)
        if prune_end:  # the head was sized for the last stage, so it goes with it
            self.num_features = self.feature_info[max_index]["num_chs"]
        if prune_head or prune_end:
            self._remove_head()
        return take


class FeatureGetterNet(nn.Module):
    """``features_only=True``: the stage maps ``out_indices`` names, from the model pruned of what they do not need.
    Its layers are its own children (timm's holds ``.model``), so its keys are the model's, as timm's ResNet's are."""

    def __init__(self, model: nn.Module, out_indices: int | Sequence[int] | None = None) -> None:
        from timm.models import FeatureInfo

        super().__init__()
        if any(True for _ in model.parameters(recurse=False)) or any(True for _ in model.buffers(recurse=False)):
            raise TypeError(f"{type(model).__name__} has tensors outside its layers; FeatureGetterNet cannot adopt it")
        take = model.prune_intermediate_layers(len(model.feature_info) if out_indices is None else out_indices)
        for name, child in model.named_children():
            self.add_module(name, child)
        object.__setattr__(self, "model", model)  # a plain attribute: its layers are registered once, above
        self.out_indices = tuple(take)
        self.feature_info = FeatureInfo(model.feature_info, self.out_indices)
        self.pretrained_cfg = self.default_cfg = dict(getattr(model, "pretrained_cfg", {}))

    def train(self, mode: bool = True) -> FeatureGetterNet:
        super().train(mode)
        self.model.training = mode  # the model's own flag gates gradient checkpointing
        return self

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.model.forward_intermediates(x, list(self.out_indices), stop_early=True, intermediates_only=True)
