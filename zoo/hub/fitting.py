"""Fitting a state dict to a model: key by key, shape by shape and dtype by dtype, adapting what may be adapted.

A classifier of another size or a first convolution with other input channels is adapted when asked
(with a warning naming the keys); anything else that does not fit is one error listing every missing,
unexpected, mismatched and wrongly typed tensor. :func:`check_finite` refuses NaN and infinite values.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping

import torch
import torch.nn as nn

from zoo.errors import WeightsError, WeightsFileError

__all__ = ["adapt_input_conv", "check_finite", "fit_state_dict", "from_timm_layout"]

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
