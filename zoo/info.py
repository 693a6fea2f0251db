"""``zoo info``: what a model is made of, layer by layer, for a given input size.

Each convolution and pooling row shows how its output size follows from the input size:
``(N - F + 2P) / S + 1`` with N the input size, F the kernel, P the padding and S the stride.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torch.nn as nn

from zoo.errors import ArgumentValueError
from zoo.utils import checks, train_mode


class LayerRow(NamedTuple):
    """One leaf module of a forward pass."""

    name: str
    kind: str
    output_shape: tuple[int, ...]
    params: int
    formula: str


def _pair(v: Any) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _size_formula(module: nn.Module, in_hw: tuple[int, int], out_hw: tuple[int, int]) -> str:
    if not isinstance(module, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
        return ""
    k, s, p = _pair(module.kernel_size), _pair(module.stride), _pair(module.padding)
    rnd = "ceil" if getattr(module, "ceil_mode", False) else "floor"
    # Both spatial axes are the same for every model here; show one when they agree.
    axes = [0] if (k[0], s[0], p[0], in_hw[0]) == (k[1], s[1], p[1], in_hw[1]) else [0, 1]
    return "; ".join(f"{rnd}(({in_hw[a]} - {k[a]} + 2*{p[a]}) / {s[a]}) + 1 = {out_hw[a]}" for a in axes)


def layer_table(model: nn.Module, input_size: tuple[int, ...]) -> list[LayerRow]:
    """Run one forward pass of a zero batch of ``input_size`` (C, H, W) and record every leaf module."""
    rows: list[LayerRow] = []
    hooks = []

    def hook(name: str):
        def fn(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
            out_shape = tuple(output.shape[1:]) if isinstance(output, torch.Tensor) else ()
            formula = ""
            if inputs and isinstance(inputs[0], torch.Tensor) and inputs[0].dim() == 4 and len(out_shape) == 3:
                formula = _size_formula(module, tuple(inputs[0].shape[2:]), out_shape[1:])
            own = sum(p.numel() for p in module.parameters(recurse=False))
            rows.append(LayerRow(name, type(module).__name__, out_shape, own, formula))

        return fn

    for name, module in model.named_modules():
        if name and not any(True for _ in module.children()):
            hooks.append(module.register_forward_hook(hook(name)))
    try:
        with train_mode(model, False), torch.no_grad():
            model(torch.zeros(1, *input_size))
    finally:
        for h in hooks:
            h.remove()
    return rows


def model_info(
    model_name: str, input_size: tuple[int, ...] | None = None, img_size: int | None = None, **kwargs: Any
) -> dict[str, Any]:
    """A dict describing ``model_name`` (built with ``kwargs``): parameters, config and layer table for an input of
    ``input_size`` (C, H, W; the model's by default), its sides replaced by ``img_size`` if given."""
    from zoo.factory import create_model

    model = create_model(model_name, **kwargs)
    cfg = dict(model.pretrained_cfg)
    size = (input_size or cfg["input_size"])[:1] + (img_size, img_size) if img_size else input_size or cfg["input_size"]
    with checks.reported(model_name, ArgumentValueError):
        size = checks.input_size("input_size", size)
        if size[0] != model.in_chans:
            raise checks.Invalid("input_size", size, f"must have {model.in_chans} channels, {model_name}'s in_chans")
    try:
        rows = layer_table(model, size)
    except RuntimeError as e:
        raise ArgumentValueError(f"{model_name} cannot take a {size[1]}x{size[2]} input: {e}") from None
    return {
        "name": model_name,
        "class": type(model).__name__,
        "params": sum(p.numel() for p in model.parameters()),
        "num_classes": model.num_classes,
        # timm >= 1.0's meanings: channels of forward_features' map, and the width of the pre-logits vector.
        "num_features": model.num_features,
        "head_hidden_size": getattr(model, "head_hidden_size", model.num_features),
        "global_pool": getattr(model, "global_pool", None),
        "in_chans": model.in_chans,
        "input_size": size,
        "pretrained_cfg": cfg,
        "layers": rows,
    }


def format_info(info: dict[str, Any]) -> str:
    """Render ``model_info`` output as text for the terminal."""
    facts = [
        ("parameters", f"{info['params']:,} ({info['params'] / 1e6:.2f} M)"),
        ("num_classes", info["num_classes"]),
        ("num_features", f"{info['num_features']} (channels of the last feature map)"),
        ("head_hidden_size", f"{info['head_hidden_size']} (pre-logits width)"),
        ("global_pool", repr(info["global_pool"])),
        ("input size", f"{' x '.join(map(str, info['input_size']))} (C x H x W)"),
    ]
    lines = [f"{info['name']}  ({info['class']})", *(f"  {k:<16} {v}" for k, v in facts), "  default config:"]
    lines += [f"    {k:<16} {v}" for k, v in info["pretrained_cfg"].items() if v is not None and k != "label_names"]
    rows: list[LayerRow] = info["layers"]
    name_w = max([len(r.name) for r in rows] + [5])
    kind_w = max([len(r.kind) for r in rows] + [4])
    shape_w = max([len(" x ".join(map(str, r.output_shape))) for r in rows] + [6])
    lines += ["", f"  {'layer':<{name_w}}  {'type':<{kind_w}}  {'output':<{shape_w}}  {'params':>10}  size"]
    for r in rows:
        shape = " x ".join(map(str, r.output_shape))
        row = f"  {r.name:<{name_w}}  {r.kind:<{kind_w}}  {shape:<{shape_w}}  {r.params:>10,}  {r.formula}"
        lines.append(row.rstrip())
    total = sum(r.params for r in rows)
    lines.append(f"  {'total':<{name_w}}  {'':<{kind_w}}  {'':<{shape_w}}  {total:>10,}")
    return "\n".join(lines)


def describe_weights(name: str, stem: str | None = None) -> str:
    """What ``zoo info`` prints about the weights of ``name`` (an arch: all its tags; ``arch.tag``: that one); with
    ``stem``, only the weights trained with that stem."""
    from zoo.pretrained import manifest
    from zoo.pretrained.fetch import cached_state
    from zoo.registry import model_entrypoint

    arch, _, tag = name.partition(".")
    entries = manifest.entries_for_arch(arch)
    entries = {tag: entries[tag]} if tag in entries else {} if tag else entries
    if stem is not None and entries:
        from zoo.pretrained.load import empty_init

        with empty_init():  # the builder's default stem, on the meta device: nothing is allocated
            own = getattr(model_entrypoint(arch)(), "stem", None)
        entries = {t: e for t, e in entries.items() if (e.model_args or {}).get("stem", own) == stem}
    default = manifest.default_tag(arch) if entries else None
    lines = ["pretrained weights:"] if entries else []
    for t, e in entries.items():
        metrics, size = e.metrics or {}, f"{e.size / 2**20:.1f} MiB ({e.size:,} bytes)" if e.size else "not recorded"
        pin = "the Hub's X-Linked-Etag or torchvision's hash prefix, then this machine's pin"
        checked = pin if e.third_party else f"sha256 {e.sha256}, size {size}"
        lines += [
            f"  {arch}.{t}{'  (default)' if t == default else ''}",
            f"    status       {e.status}",
            *(f"    {'source' if i == 0 else 'else':<12} {s.resolved().describe()}" for i, s in enumerate(e.sources)),
            f"    checked by   {checked}",
            f"    on this host {cached_state(f'{arch}.{t}')}",
            f"    dataset      {e.dataset or 'unknown'}, {e.num_classes} classes",
            f"    input        {' x '.join(map(str, e.input_size))}, {e.interpolation}, crop_pct {e.crop_pct:.4g}",
            f"    mean / std   {tuple(e.mean)} / {tuple(e.std)}",
        ]
        top = ", ".join(f"{k} {metrics[k]:.3f}%" for k in ("top1", "top5") if metrics.get(k) is not None)
        if top:
            on = f" on the {metrics['eval_set']}" if metrics.get("eval_set") else ""
            lines.append(f"    metrics      {top}{on} (measured by {metrics.get('measured_by', 'unknown')})")
        lines += [
            f"    {k:<12} {v}"
            for k, v in (
                ("measured by", metrics.get("command")),
                ("license", e.license),
                ("produced by", (e.origin or {}).get("command")),
                *((k, (e.origin or {}).get(k)) for k in ("upstream", "hf_hub", "url", "recipe")),
            )
            if v
        ]
    return "\n".join(lines)
