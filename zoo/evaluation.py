"""Evaluation: top-1, top-5, loss, per-class accuracy and a confusion matrix.

:func:`evaluate` takes any model and dataset (or an iterable of batches) and is what training, ``zoo eval``
and the publish step use. Under ``torch.distributed`` each rank evaluates its share and the sums are
all-reduced, so every rank returns the metrics of the whole set.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from zoo.errors import DataError, WeightsFileError
from zoo.utils.files import atomic_path, parse_json

__all__ = [
    "eval_batches",
    "evaluate",
    "format_results",
    "load_run_model",
    "plot_confusion",
    "read_run_config",
    "read_run_record",
]


def _dist_info() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def eval_batches(
    dataset: Dataset | Iterable,
    batch_size: int = 500,
    workers: int = 0,
    device: torch.device | str = "cpu",
    rank: int = 0,
    world_size: int = 1,
) -> Iterable:
    """Batches of ``dataset`` in order; with ``world_size > 1`` only this rank's share (no padding)."""
    from zoo.data import TensorImageDataset, TensorLoader

    if isinstance(dataset, TensorImageDataset):
        return TensorLoader(dataset, batch_size, rank=rank, world_size=world_size, pad=False, device=device)
    if not isinstance(dataset, Dataset):
        return dataset  # already batches
    indices = list(range(rank, len(dataset), world_size))  # type: ignore[arg-type]
    return DataLoader(
        dataset, batch_size=batch_size, sampler=indices, num_workers=workers,
        pin_memory=torch.device(device).type == "cuda", generator=torch.Generator().manual_seed(0),
    )  # fmt: skip


@torch.no_grad()
def evaluate(
    model: nn.Module,
    dataset: Dataset | Iterable,
    *,
    batch_size: int = 500,
    workers: int = 0,
    device: torch.device | str | None = None,
    num_classes: int | None = None,
    label_names: Sequence[str] | None = None,
    amp: bool = False,
    channels_last: bool = False,
    progress: bool = False,
) -> dict[str, Any]:
    """Top-1/top-5 accuracy (%), mean cross-entropy loss, per-class accuracy and the confusion matrix.

    ``dataset`` yields ``(image, label)`` samples (or is an iterable of batches). Returns a dict with
    ``acc1``, ``acc5``, ``loss``, ``count``, ``per_class_acc`` (list, None for classes absent from the set),
    ``confusion`` (``confusion[true][pred]`` counts, a list of lists) and ``label_names``.
    """
    import torch.distributed as dist

    device = torch.device(device) if device is not None else next(model.parameters()).device
    rank, world = _dist_info()
    num_classes = num_classes or getattr(model, "num_classes", None)
    was_training = model.training
    model.eval()
    sums = torch.zeros(4, dtype=torch.float64, device=device)  # loss, top-1, top-5, count
    confusion = None
    batches = eval_batches(dataset, batch_size, workers, device, rank, world)
    if progress:
        from zoo.utils import progress as bar

        batches = bar(batches, desc="eval", unit="batch", total=len(batches) if hasattr(batches, "__len__") else None)
    autocast = torch.autocast(device.type, dtype=torch.float16) if amp and device.type == "cuda" else nullcontext()
    try:
        for images, targets in batches:
            images = images.to(device, non_blocking=True)
            targets = torch.as_tensor(targets).to(device, non_blocking=True)
            if channels_last and images.dim() == 4:
                images = images.contiguous(memory_format=torch.channels_last)
            with autocast:
                logits = model(images)
            logits = logits.float()
            if confusion is None:
                num_classes = num_classes or logits.shape[1]
                confusion = torch.zeros(num_classes, num_classes, dtype=torch.long, device=device)
            k = min(5, logits.shape[1])
            top = logits.topk(k, dim=1).indices
            hit = top == targets.view(-1, 1)
            sums[0] += F.cross_entropy(logits, targets, reduction="sum").double()
            sums[1] += hit[:, 0].sum()
            sums[2] += hit.any(dim=1).sum()
            sums[3] += len(targets)
            confusion += torch.bincount(targets * num_classes + top[:, 0], minlength=num_classes**2).view_as(confusion)
    finally:
        model.train(was_training)
    if confusion is None:
        confusion = torch.zeros(num_classes or 0, num_classes or 0, dtype=torch.long, device=device)
    if world > 1:
        dist.all_reduce(sums)
        dist.all_reduce(confusion)
    count = int(sums[3].item())
    if count == 0:
        raise DataError("evaluate: the dataset is empty")
    cm = confusion.cpu()
    per_class_total = cm.sum(1)
    per_class = [None if t == 0 else 100.0 * float(cm[i, i]) / float(t) for i, t in enumerate(per_class_total.tolist())]
    names = list(label_names) if label_names else list(getattr(dataset, "classes", None) or [])
    if len(names) != cm.shape[0]:
        names = [str(i) for i in range(cm.shape[0])]
    return {
        "loss": float(sums[0].item()) / count,
        "acc1": 100.0 * float(sums[1].item()) / count,
        "acc5": 100.0 * float(sums[2].item()) / count,
        "count": count,
        "per_class_acc": per_class,
        "confusion": cm.tolist(),
        "label_names": names,
    }


def format_results(results: dict[str, Any], title: str = "") -> str:
    """A readable report: the headline numbers and a per-class table."""
    lines = [title] if title else []
    lines.append(
        f"top-1 {results['acc1']:.2f} %   top-5 {results['acc5']:.2f} %   loss {results['loss']:.4f}   "
        f"({results['count']} images)"
    )
    names = results["label_names"]
    width = max([len("class"), *map(len, names)])
    lines.append(f"{'class':<{width}}  {'accuracy':>8}  {'images':>6}")
    for i, (name, acc) in enumerate(zip(names, results["per_class_acc"], strict=True)):
        total = sum(results["confusion"][i])
        lines.append(f"{name:<{width}}  {'-' if acc is None else f'{acc:.2f} %':>8}  {total:>6}")
    return "\n".join(lines)


# The PNG text chunk that marks a confusion matrix as zoo's: ``zoo eval --confusion FILE`` replaces an existing
# FILE only when it carries this (an earlier evaluation's), never a picture of the user's or a run's curves.png.
CONFUSION_PNG_KEY, CONFUSION_PNG_VALUE = "Description", "zoo eval confusion matrix"


def is_confusion_png(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a confusion matrix :func:`plot_confusion` wrote (a PNG carrying zoo's mark)."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            return img.format == "PNG" and getattr(img, "text", {}).get(CONFUSION_PNG_KEY) == CONFUSION_PNG_VALUE
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):  # not an image, or not one to trust
        return False


def plot_confusion(
    confusion: Sequence[Sequence[int]], label_names: Sequence[str], path: str | os.PathLike, title: str = ""
) -> Path:
    """Draw the confusion matrix (rows: true class, normalised per row; counts written in small matrices)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cm = torch.tensor(confusion, dtype=torch.float64)
    n = cm.shape[0]
    rates = cm / cm.sum(1, keepdim=True).clamp(min=1)
    size = min(4 + 0.5 * n, 30)
    fig = Figure(figsize=(size, size * 0.9), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    im = ax.imshow(rates.numpy(), cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    if n <= 30:
        ax.set_xticks(range(n), labels=list(label_names), rotation=45, ha="right")
        ax.set_yticks(range(n), labels=list(label_names))
    if n <= 20:
        for i in range(n):
            for j in range(n):
                if cm[i, j]:
                    ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=8,
                            color="white" if rates[i, j] > 0.5 else "black")  # fmt: skip
    ax.set(xlabel="predicted", ylabel="true", title=title or "confusion matrix")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", metadata={CONFUSION_PNG_KEY: CONFUSION_PNG_VALUE})
    return path


# ---------------------------------------------------------------------------------------------------------------
# Loading a model from a run folder or a checkpoint file


def _run_file(checkpoint: str | os.PathLike, name: str) -> dict[str, Any] | None:
    path = Path(checkpoint)
    folder = path if path.is_dir() else path.parent
    if (folder / name).is_file():
        try:
            record = parse_json((folder / name).read_text(encoding="utf-8"))
        except ValueError as e:  # not JSON, not UTF-8, or nested too deeply
            raise DataError(f"{folder / name} is not valid JSON ({str(e).splitlines()[0][:200]})") from None
        if not isinstance(record, dict):
            raise DataError(f"{folder / name} holds a {type(record).__name__}, not a JSON object")
        return record
    return None


def read_run_config(checkpoint: str | os.PathLike) -> dict[str, Any] | None:
    """The ``config.json`` written beside a training run's checkpoints (how to rebuild the model), if any."""
    return _run_file(checkpoint, "config.json")


def read_run_record(checkpoint: str | os.PathLike) -> dict[str, Any] | None:
    """The ``run.json`` beside a training run's checkpoints (dataset, ``seed``, ``val_split``, recipe), if any."""
    return _run_file(checkpoint, "run.json")


def load_state_dict_file(path: str | os.PathLike, prefer_ema: bool = True) -> dict[str, torch.Tensor]:
    """Weights from a ``.safetensors`` file or a training checkpoint (``last.pt``: its EMA or model weights)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    from zoo.pretrained.files import read_pickle_checkpoint, strip_wrapper_prefix

    if path.suffix == ".safetensors":
        from zoo.pretrained.files import load_file

        return strip_wrapper_prefix(load_file(path))
    return read_pickle_checkpoint(path, prefer_ema=prefer_ema)


def load_run_model(
    name: str, checkpoint: str | os.PathLike, *, default_kwargs: dict[str, Any] | None = None
) -> tuple[nn.Module, dict[str, Any] | None]:
    """Build ``name`` with the arguments its run recorded (``config.json``) and load the checkpoint's weights.

    Without a ``config.json`` the model is built with ``default_kwargs`` (the dataset's classes and channels).
    """
    from zoo.factory import create_model
    from zoo.pretrained.load import check_finite
    from zoo.registry import split_model_name_tag

    cfg = read_run_config(checkpoint)
    kwargs = dict(default_kwargs or {})
    if cfg:
        arch = cfg.get("architecture")
        if arch and arch != split_model_name_tag(name)[0]:
            raise WeightsFileError(f"{checkpoint} was trained as {arch!r}, not {name!r}")
        kwargs = {**kwargs, **cfg.get("model_args", {})}
    checkpoint = Path(checkpoint)
    if checkpoint.is_dir():
        checkpoint = checkpoint / "best.safetensors"
    model = create_model(split_model_name_tag(name)[0], **kwargs)
    state = load_state_dict_file(checkpoint)
    # A diverged run's weights would be "evaluated" at chance level; say what is wrong instead.
    check_finite(state, str(checkpoint), hint="the run diverged before this checkpoint; evaluate an earlier one")
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise WeightsFileError(
            f"{checkpoint} does not fit {name} built with {kwargs}: {str(e).splitlines()[0]}"
        ) from None
    if cfg and cfg.get("pretrained_cfg"):
        model.pretrained_cfg = {**model.pretrained_cfg, **cfg["pretrained_cfg"]}
    return model, cfg
