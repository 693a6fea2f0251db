"""Evaluation: top-1, top-5, loss, per-class accuracy and a confusion matrix of any model on any dataset
(:func:`evaluate`), and what ``zoo eval`` does with a run's or published weights (:func:`evaluate_weights`)."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from zoo.data import TensorImageDataset, TensorLoader, create_datasets, data_fingerprint, dataset_shape, parse_dataset
from zoo.data.transforms import create_transform
from zoo.errors import ArgumentValueError, DataError, WeightsError
from zoo.factory import create_model
from zoo.registry import split_model_name_tag
from zoo.runs import (
    CHOSE_EPOCH,
    FLATTERS,
    RUN_JSON,
    images_called,
    label_names,
    load_model,
    printable,
    read_run,
    refuse_tag_with_checkpoint,
)
from zoo.utils import parse_device, train_mode
from zoo.utils import progress as progress_bar
from zoo.utils.files import atomic_path
from zoo.utils.scores import chance_rate, chance_warning, score_text, shows_top5, wilson_interval


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
    """``acc1``, ``acc5`` (%), ``loss``, ``count``, ``per_class_acc``, ``confusion`` (``[true][pred]`` counts) and
    ``label_names`` of ``model`` on ``dataset`` (or batches); under torch.distributed, of the whole set."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    grouped = dist.is_available() and dist.is_initialized()
    rank, world = (dist.get_rank(), dist.get_world_size()) if grouped else (0, 1)
    num_classes = num_classes or getattr(model, "num_classes", None)
    sums = torch.zeros(5, dtype=torch.float64, device=device)  # loss, top-1, top-5, count, non-finite outputs
    confusion = None
    batches: Any = dataset  # already batches, unless a dataset: then in order, only this rank's share (no padding)
    if isinstance(dataset, TensorImageDataset):
        batches = TensorLoader(dataset, batch_size, rank=rank, world_size=world, pad=False, device=device)
    elif isinstance(dataset, Dataset):
        pin, order, share = device.type == "cuda", torch.Generator().manual_seed(0), range(rank, len(dataset), world)
        batches = DataLoader(dataset, batch_size, sampler=share, num_workers=workers, pin_memory=pin, generator=order)
    if progress:
        batches = progress_bar(batches, desc="eval", unit="batch")  # tqdm takes the total from len(), if any
    autocast = torch.autocast(device.type, dtype=torch.float16) if amp and device.type == "cuda" else nullcontext()
    with train_mode(model, False):
        for images, targets in batches:
            images = images.to(device, non_blocking=True)
            targets = torch.as_tensor(targets).to(device, non_blocking=True)
            if channels_last and images.dim() == 4:
                images = images.contiguous(memory_format=torch.channels_last)
            with autocast:
                logits = model(images).float()
            if confusion is None:
                num_classes = num_classes or logits.shape[1]
                confusion = torch.zeros(num_classes, num_classes, dtype=torch.long, device=device)
            top = logits.topk(min(5, logits.shape[1]), dim=1).indices
            hit = top == targets.view(-1, 1)
            sums[0] += F.cross_entropy(logits, targets, reduction="sum").double()
            sums[1] += hit[:, 0].sum()
            sums[2] += hit.any(dim=1).sum()
            sums[3] += len(targets)
            sums[4] += (~torch.isfinite(logits)).any(dim=1).sum()
            confusion += torch.bincount(targets * num_classes + top[:, 0], minlength=num_classes**2).view_as(confusion)
    if confusion is None:
        confusion = torch.zeros(num_classes or 0, num_classes or 0, dtype=torch.long, device=device)
    if world > 1:
        dist.all_reduce(sums)
        dist.all_reduce(confusion)
    count, broken = int(sums[3].item()), int(sums[4].item())
    if count == 0:
        raise DataError("evaluate: the dataset is empty")
    if broken:  # the scores of NaN or infinite outputs would mean nothing
        raise WeightsError(
            f"the model's outputs are NaN or infinite for {broken} of {count} images",
            hint="the weights, or the normalisation (mean, std) they came with, are broken",
        )
    cm = confusion.cpu()
    per_class = [None if t == 0 else 100.0 * float(cm[i, i]) / float(t) for i, t in enumerate(cm.sum(1).tolist())]
    names = list(label_names) if label_names else list(getattr(dataset, "classes", None) or [])
    if len(names) != cm.shape[0]:
        names = [str(i) for i in range(cm.shape[0])]
    hits = int(sums[1].item())
    return {
        "loss": float(sums[0].item()) / count,
        "acc1": 100.0 * hits / count,
        "acc5": 100.0 * float(sums[2].item()) / count,
        "count": count,
        "acc1_ci95": list(wilson_interval(hits, count)),
        "chance": chance_rate(cm.sum(1).tolist()),
        "per_class_acc": per_class,
        "confusion": cm.tolist(),
        "label_names": names,
    }


def format_results(results: dict[str, Any], title: str = "") -> str:
    """A readable report: the headline numbers and a per-class table."""
    lines = [title] if title else []
    top5 = f"   top-5 {results['acc5']:.2f} %" if shows_top5(len(results["confusion"])) else ""
    lines.append(f"top-1 {score_text(results['acc1'], results['count'])}{top5}   loss {results['loss']:.4f}")
    names = [printable(n) for n in results["label_names"]]  # from a file: never a terminal escape or a forged line
    width = max([len("class"), *map(len, names)])
    lines.append(f"{'class':<{width}}  {'accuracy':>8}  {'images':>6}")
    for i, (name, acc) in enumerate(zip(names, results["per_class_acc"], strict=True)):
        total = sum(results["confusion"][i])
        lines.append(f"{name:<{width}}  {'-' if acc is None else f'{acc:.2f} %':>8}  {total:>6}")
    return "\n".join([*lines, *(f"warning: {w}" for w in results.get("warnings", ()))])


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
        ax.set_xticks(range(n), labels=[printable(s) for s in label_names], rotation=45, ha="right")
        ax.set_yticks(range(n), labels=[printable(s) for s in label_names])
    cells = [(i, j) for i in range(n) for j in range(n) if cm[i, j]] if n <= 20 else []
    for i, j in cells:
        color = "white" if rates[i, j] > 0.5 else "black"
        ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=8, color=color)
    ax.set(xlabel="predicted", ylabel="true", title=title or "confusion matrix")
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:  # it makes the folder too
        fig.savefig(tmp, format="png", metadata={CONFUSION_PNG_KEY: CONFUSION_PNG_VALUE})
    return path


def evaluate_weights(
    model: str,
    dataset: str,
    data_dir: str | None = None,
    *,
    checkpoint: str | os.PathLike[str] | None = None,
    pretrained: bool = False,
    split: str | None = None,
    val_split: float | None = None,
    seed: int | None = None,
    stem: str | None = None,
    batch_size: int = 500,
    workers: int = 2,
    device: str = "auto",
    download: bool = False,
    skip_bad_images: bool = False,
) -> dict[str, Any]:
    """What ``zoo eval`` measures (docs/training.md, "Evaluation"): a run's ``checkpoint`` or the ``pretrained``
    weights of ``model`` (implied by an ``arch.tag``, as in ``zoo predict``) on a ``split`` of ``dataset``;
    :func:`evaluate`'s results with what they are of."""
    if not checkpoint and not pretrained and not split_model_name_tag(model)[1]:
        raise ArgumentValueError("give --checkpoint PATH (a `zoo train` run), --pretrained, or weights as arch.tag")
    refuse_tag_with_checkpoint(model, checkpoint, "eval", "--pretrained instead of --checkpoint")
    dev = parse_device(device)  # before any data or weights are read
    kind, folder = parse_dataset(dataset, data_dir)
    kwargs = {"stem": stem} if stem else {}
    run, source = None, f"{model} (pretrained)"
    if checkpoint:  # the model first: its input size and normalisation size the images
        shape = dataset_shape(dataset, data_dir)
        shaped = {"num_classes": shape[0], "in_chans": shape[1]} if shape else {}
        net = load_model(checkpoint, split_model_name_tag(model)[0], **kwargs, **shaped)
        run_dir = Path(checkpoint) if Path(checkpoint).is_dir() else Path(checkpoint).parent
        run, source = read_run(run_dir) if (run_dir / RUN_JSON).is_file() else None, str(checkpoint)
    else:
        net = create_model(model, pretrained=True, **kwargs)
    cfg = net.pretrained_cfg
    # The image folder a run trained on is split again as the run split it, so that only its held-out images are
    # evaluated; another folder is new to the model: all of it.
    own = run is not None and _same_folder(run.data_dir, folder, run_dir)
    chosen = split or ("all" if kind == "imagefolder" and not own and val_split is None else "test")
    seed = seed if seed is not None else run.seed if run is not None and run.seed is not None else 42
    val_split = val_split if val_split is not None or not own else run.val_split
    splits = {"all": ("train", "val"), "train": ("train",)}.get(chosen, ("val",))
    eval_tf = create_transform(cfg) if pretrained and kind in ("cifar10", "cifar100", "imagefolder") else None
    norm = (cfg["mean"], cfg["std"]) if len(cfg["mean"]) in (1, 3) else None
    train_set, val_set, info = create_datasets(
        dataset,
        data_dir,
        model_cfg=cfg,
        val_split=(0.0 if chosen == "all" else val_split) if kind == "imagefolder" else None,
        seed=seed,
        strict_images=not skip_bad_images,
        download=download,
        eval_transform=eval_tf,
        normalization=norm,
        splits=splits,
    )
    if train_set is not None and kind == "imagefolder":  # the training images as the model sees them at test time
        train_set.transform = eval_tf or create_transform(cfg)
    parts = [d for d in (train_set, val_set) if d is not None and len(d)]
    data = parts[0] if len(parts) == 1 else torch.utils.data.ConcatDataset(parts) if parts else None
    if data is None:
        raise DataError(f"{dataset} has no {chosen} images")
    held_out = own and splits == ("val",)  # the run's own validation images
    described = images_called(run, held_out, info.eval_set_name if splits == ("val",) else chosen)
    report = "evaluate on images that chose nothing (the folder's test/ or other photos) to report it"
    notes = [f"{FLATTERS}: {report}"] if described == CHOSE_EPOCH else []
    recorded = run.data_identity.get("val_data") if held_out else None
    now = data_fingerprint(data) if recorded else None
    if now is not None and now["sha256"] != recorded.get("sha256"):
        warnings.warn(
            f"these are not the held-out images the run validated on: {now['images']} images with SHA-256 "
            f"{now['sha256'][:12]}… of their {now['of']}, the run's were {recorded.get('images')} with "
            f"{str(recorded.get('sha256'))[:12]}… (the folder changed since the run)",
            stacklevel=2,
        )
    if net.num_classes != info.num_classes:
        raise ArgumentValueError(f"{model} predicts {net.num_classes} classes but {info.name} has {info.num_classes}")
    known = label_names(net, source) if cfg.get("label_names") else None
    if kind == "imagefolder" and known:
        _check_same_classes(known, list(info.classes), source, dataset)
    net.to(dev)
    results = evaluate(
        net,
        data,
        batch_size=batch_size,
        workers=workers,
        device=dev,
        label_names=known or info.classes,
        amp=dev.type == "cuda",
        progress=True,
    )
    notes += chance_warning(results["acc1"], results["count"], results["chance"], "the evaluation's")
    return {"model": model, "source": source, "dataset": info.name, "eval_set": described, **results, "warnings": notes}


def _same_folder(recorded: str | None, folder: Path, run_dir: Path) -> bool:
    """Whether ``folder`` is the data folder a run recorded (relative to where it was trained, or to the run)."""
    if not recorded:
        return False
    candidates = [Path(recorded).expanduser()]
    if not Path(recorded).is_absolute():
        candidates.append(run_dir.parent.parent / recorded)  # runs/NAME beside the working folder it was made in
    return any(c.resolve() == folder.resolve() for c in candidates)


def _check_same_classes(known: list[str], found: list[str], source: str, dataset: str) -> None:
    """An image folder's classes must be the weights' own, in order: output k means the weights' class k."""
    if known == found:
        return
    differ = next(
        (i for i, (a, b) in enumerate(zip(known, found, strict=False)) if a != b), min(map(len, (known, found)))
    )
    at = [repr(names[differ]) if differ < len(names) else "missing" for names in (known, found)]
    where = f"; class {differ} is {at[0]} for the weights, {at[1]} there" if differ >= 10 else ""
    # The first ten of each: 1000 ImageNet classes would make the line unreadable.
    shown = [
        ", ".join(map(printable, n[:10])) + (f", … ({len(n)} classes)" if len(n) > 10 else "") for n in (known, found)
    ]
    raise ArgumentValueError(
        f"{source} was trained on the classes {shown[0]} but {dataset} has {shown[1]}{where}: a model cannot be "
        "scored on classes it does not know",
        hint="evaluate it on a folder with one sub-folder per class it was trained on, named as in training",
    )
