"""What a run reports: the loss sums, a split too small to choose, weights no better than chance, sample
predictions, the epoch line."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn

from zoo.data.tensor import channel_stats
from zoo.errors import TrainingDiverged
from zoo.training.checkpoint import rng_state, set_rng_state
from zoo.utils import scores, train_mode
from zoo.utils.scores import MIN_SELECTION_IMAGES, score_text


def sum_losses(window: list[tuple[int, torch.Tensor, int]], diverged: Callable[[int, float], str]) -> float:
    """The sample-weighted loss sum of the steps in ``window`` (batch index, loss, batch size), emptied; one
    host synchronisation for many steps. The first NaN or infinite loss raises ``TrainingDiverged``."""
    if not window:
        return 0.0
    losses = torch.stack([loss.float() for _, loss, _ in window]).cpu()
    bad = (~torch.isfinite(losses)).nonzero()
    if len(bad):
        k = int(bad[0])
        raise TrainingDiverged(diverged(window[k][0], float(losses[k])))
    sizes = torch.tensor([n for _, _, n in window], dtype=torch.float64)
    window.clear()
    return float((losses.double() * sizes).sum())


def selection_warning(val_set: Any) -> list[str]:
    """A held-out split too small to choose an epoch (under ``MIN_SELECTION_IMAGES``), said when the run starts."""
    n = len(val_set) if val_set is not None else MIN_SELECTION_IMAGES
    if n >= MIN_SELECTION_IMAGES:
        return []
    return [
        f"the validation split has {n} images, too few to choose an epoch: one image moves its top-1 by "
        f"{100 / max(n, 1):.1f} points and its 95 % interval is wider than +-10 (under {MIN_SELECTION_IMAGES} "
        "images). Hold out more (--val-split), or none (--val-split 0) to keep the last epoch"
    ]


def chance_warning(history: list[dict[str, Any]], best_epoch: int | None, num_classes: int) -> list[str]:
    """The kept epoch's score when it does not beat chance (its validation images first, else the test set)."""
    row = history[best_epoch - 1] if best_epoch is not None else {}
    split = "val" if row.get("val_acc1") is not None else "test" if row.get("test_acc1") is not None else None
    if split is None or not row.get(f"{split}_count"):
        return []
    chance = row.get(f"{split}_chance") or 100.0 / max(num_classes, 1)
    what = f"the kept epoch {best_epoch}'s {'validation' if split == 'val' else 'test'}"
    return scores.chance_warning(row[f"{split}_acc1"], row[f"{split}_count"], chance, what)


def sample_predictions(
    module: nn.Module, dataset: Any, label_names: list[str], device: torch.device, channels_last: bool, n: int = 16
) -> tuple[torch.Tensor, list[str]]:
    """``n`` images spread over ``dataset``, unnormalised to show, and "predicted / true" titles for them."""
    step = max(1, len(dataset) // n)
    # Reading samples runs the dataset's transforms, which may draw random numbers: put the RNG states
    # back, so that a run resumed from this epoch's checkpoint (saved before) matches an uninterrupted one.
    saved = rng_state()
    try:
        items = [dataset[i] for i in range(0, min(len(dataset), step * n), step)][:n]
    finally:
        set_rng_state(saved)
    images = torch.stack([x for x, _ in items])
    labels = [int(y) for _, y in items]
    with torch.no_grad(), train_mode(module, False):
        layout = torch.channels_last if channels_last else torch.contiguous_format
        preds = module(images.to(device).contiguous(memory_format=layout)).argmax(1).tolist()
    titles = [f"{label_names[p]} / {label_names[t]}" for p, t in zip(preds, labels, strict=True)]
    mean, std = getattr(dataset, "mean", None), getattr(dataset, "std", None)
    if mean is None or std is None:  # statistics unknown: scaled to [0, 1] image by image
        lo, hi = images.amin(dim=(1, 2, 3), keepdim=True), images.amax(dim=(1, 2, 3), keepdim=True)
        return (images - lo) / (hi - lo).clamp(min=1e-6), titles
    return (images * channel_stats(std, images.device) + channel_stats(mean, images.device)).clamp(0, 1), titles


def epoch_line(row: dict[str, Any], epochs: int, num_classes: int, is_best: bool) -> str:
    """The line printed after each epoch, as metrics.csv has it (``*`` marks a new best on the validation images);
    top-5 only where it says something."""
    parts = [f"epoch {row['epoch']}/{epochs}", f"train loss {row['train_loss']:.4f}"]
    if row.get("train_acc1") is not None:
        parts.append(f"acc {score_text(row['train_acc1'], row['train_count'])}")
    for split in ("val", "test"):
        if row.get(f"{split}_acc1") is not None:
            top5 = f" top-5 {row[f'{split}_acc5']:.2f} %" if scores.shows_top5(num_classes) else ""
            top1 = score_text(row[f"{split}_acc1"], row[f"{split}_count"])
            parts.append(f"{split} loss {row[f'{split}_loss']:.4f} top-1 {top1}{top5}")
    parts.append(f"lr {row['lr']:.2e}")
    parts.append(f"{row['epoch_time']:.1f}s ({row['img_per_s']:.0f} img/s)")  # all processes' images, as metrics.csv
    return "  ".join(parts) + ("  *" if is_best else "")
