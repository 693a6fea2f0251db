"""What a run reports: the loss sums, weights that score about chance, sample predictions, the epoch line."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn

from zoo.data.tensor import channel_stats
from zoo.errors import TrainingDiverged
from zoo.training.checkpoint import rng_state, set_rng_state


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


def chance_warning(history: list[dict[str, Any]], best_epoch: int | None, num_classes: int) -> list[str]:
    """A kept epoch that scores about what guessing would (held-out images first, else the test set)."""
    row = history[best_epoch - 1] if best_epoch is not None else {}
    split = "val" if row.get("val_acc1") is not None else "test" if row.get("test_acc1") is not None else None
    chance = 100.0 / max(num_classes, 1)
    if split is None or num_classes < 2 or row[f"{split}_acc1"] > 1.25 * chance:
        return []
    where = "the held-out images" if split == "val" else "the test images"
    return [
        f"the kept weights (epoch {best_epoch}) score {row[f'{split}_acc1']:.2f} % top-1 on {where}, about "
        f"chance for {num_classes} classes ({chance:.1f} %): the model has not learned. Train for more epochs, "
        "with a lower --lr, or on more images"
    ]


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
    was_training = module.training
    module.eval()
    with torch.no_grad():
        layout = torch.channels_last if channels_last else torch.contiguous_format
        preds = module(images.to(device).contiguous(memory_format=layout)).argmax(1).tolist()
    module.train(was_training)
    titles = [f"{label_names[p]} / {label_names[t]}" for p, t in zip(preds, labels, strict=True)]
    mean, std = getattr(dataset, "mean", None), getattr(dataset, "std", None)
    if mean is None or std is None:  # statistics unknown: scaled to [0, 1] image by image
        lo, hi = images.amin(dim=(1, 2, 3), keepdim=True), images.amax(dim=(1, 2, 3), keepdim=True)
        return (images - lo) / (hi - lo).clamp(min=1e-6), titles
    return (images * channel_stats(std, images.device) + channel_stats(mean, images.device)).clamp(0, 1), titles


def epoch_line(row: dict[str, Any], epochs: int, world: int, is_best: bool) -> str:
    """The line printed after each epoch (``*`` marks a new best on the held-out images)."""
    parts = [f"epoch {row['epoch']}/{epochs}", f"train loss {row['train_loss']:.4f}"]
    if row.get("train_acc1") is not None:
        parts.append(f"acc {row['train_acc1']:.2f}")
    if row.get("val_acc1") is not None:
        parts.append(f"val loss {row['val_loss']:.4f} top-1 {row['val_acc1']:.2f} top-5 {row['val_acc5']:.2f}")
    if row.get("test_acc1") is not None:
        parts.append(f"test top-1 {row['test_acc1']:.2f} top-5 {row['test_acc5']:.2f}")
    parts.append(f"lr {row['lr']:.2e}")
    parts.append(f"{row['epoch_time']:.1f}s ({row['img_per_s'] * world:.0f} img/s)")
    return "  ".join(parts) + ("  *" if is_best else "")
