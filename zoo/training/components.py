"""The parts a training run is built from: optimiser, scheduler, loss, EMA, mixup and the training loader."""

from __future__ import annotations

import functools
import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from zoo.data.tensor import TensorImageDataset, TensorLoader
from zoo.errors import DataError
from zoo.runs import model_arch
from zoo.training.distributed import rank_world
from zoo.training.recipes import Recipe
from zoo.utils import train_mode


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 in hardware (AVX512-BF16 or AMX); emulated, bf16 is slower than float32."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        flags = []
    if flags:
        return ("avx512_bf16" in flags or "amx_bf16" in flags) and torch.backends.mkldnn.is_available()
    try:  # no /proc (macOS, Windows): oneDNN's own check
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def amp_dtype(device: torch.device, amp: bool) -> torch.dtype | None:
    """The autocast dtype of a recipe's ``amp`` on ``device``: float16 on CUDA, bfloat16 on a CPU with native bf16
    (1.65x faster for resnet20: benchmarks/cifar_epoch.py), else None."""
    if amp and device.type == "cuda":
        return torch.float16
    return torch.bfloat16 if amp and device.type == "cpu" and cpu_has_native_bf16() else None


class SkipSampler(DistributedSampler):
    """A seeded, epoch-aware shuffler (for one process too) that drops its first ``skip`` indices, to resume in the
    middle of an epoch."""

    skip = 0

    def __iter__(self) -> Iterator[int]:
        return itertools.islice(super().__iter__(), self.skip, None)

    def __len__(self) -> int:
        return max(0, super().__len__() - self.skip)


def seed_worker(worker_id: int) -> None:
    # Python's and NumPy's RNGs (timm's RandAugment and mixup use them) follow the seed torch gives the worker.
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)


@dataclass
class Components:
    """What a run trains with, built once by :func:`build_components` (``model`` is DDP-wrapped under torchrun)."""

    model: nn.Module
    model_without_ddp: nn.Module
    train_loader: Any
    steps_per_epoch: int
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler  # a no-op unless float16 autocast runs on CUDA
    ema: Any
    mixup: Any
    criterion: nn.Module
    sampler: SkipSampler | None = None  # a DataLoader's; a TensorLoader shuffles by itself
    loader_generator: torch.Generator | None = None

    def eval_module(self, eval_model: str) -> nn.Module:
        """The weights a run evaluates and keeps: the EMA's when the recipe says so, else the model's own."""
        return self.ema.module if self.ema is not None and eval_model == "ema" else self.model_without_ddp

    def set_epoch(self, epoch: int, start_batch: int, seed: int, rank: int, batch_size: int) -> None:
        """Put the loader at ``start_batch`` of ``epoch``: the same order and augmentation as an unbroken run."""
        if self.sampler is None:
            self.train_loader.set_epoch(epoch, start_batch)
            return
        self.sampler.set_epoch(epoch)
        self.sampler.skip = start_batch * batch_size
        # Worker seeds come from this generator: fixed per epoch, so a resumed epoch augments the same way,
        # and per rank, so that the ranks of a DDP run augment their shares differently.
        epoch_seed = seed * 1_000_003 + epoch
        self.loader_generator.manual_seed(epoch_seed * 1_000_003 + rank if rank else epoch_seed)  # type: ignore[union-attr]


def make_train_loader(
    train_set: Dataset, recipe: Recipe, batch_size: int, device: torch.device, drop_last: bool
) -> tuple[Any, SkipSampler | None, torch.Generator | None]:
    """The training loader, its sampler and its workers' seed generator (None, None for a tensor dataset)."""
    r, (rank, world) = recipe, rank_world()
    if isinstance(train_set, TensorImageDataset):
        augment = {"shift": r.crop_pad, "hflip": r.hflip, "rand_augment": r.rand_augment}
        share = {"seed": r.seed, "rank": rank, "world_size": world, "device": device}
        return TensorLoader(train_set, batch_size, shuffle=True, drop_last=drop_last, **augment, **share), None, None
    sampler = SkipSampler(train_set, num_replicas=world, rank=rank, shuffle=True, seed=r.seed)
    generator = torch.Generator()
    workers = {"num_workers": r.workers, "worker_init_fn": seed_worker, "generator": generator}
    pin = device.type == "cuda"
    loader = DataLoader(train_set, batch_size, sampler=sampler, drop_last=drop_last, pin_memory=pin, **workers)
    return loader, sampler, generator


def build_components(
    model: nn.Module, train_set: Dataset, recipe: Recipe, device: torch.device, num_classes: int, amp: bool
) -> Components:
    """Move ``model`` to ``device`` (DDP-wrapped under torchrun) and build what trains it from ``recipe``."""
    from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
    from timm.optim import create_optimizer_v2

    r, (_, world), bare = recipe, rank_world(), model
    model.to(device)
    if r.channels_last:
        model.to(memory_format=torch.channels_last)
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    mixing = r.mixup > 0 or r.cutmix > 0
    loader, sampler, generator = make_train_loader(train_set, r, r.batch_size // world, device, drop_last=mixing)
    if len(loader) == 0:
        raise DataError(f"the training set ({len(train_set)} images) gives no batch of {r.batch_size // world}")  # type: ignore[arg-type]
    optimizer = create_optimizer_v2(
        bare, r.opt, r.lr, r.weight_decay, r.momentum, filter_bias_and_bn=r.filter_bias_and_bn
    )
    ema = mixup = scheduler = None
    if r.ema:
        from timm.utils import ModelEmaV3

        ema = ModelEmaV3(bare, decay=r.ema_decay, use_warmup=True)
    if mixing:
        from timm.data import Mixup

        mixup = Mixup(r.mixup, r.cutmix, prob=r.mixup_prob, label_smoothing=r.label_smoothing, num_classes=num_classes)
    # Soft-target cross-entropy under mixup/cutmix (their targets are soft), label smoothing if asked, else plain.
    criterion = SoftTargetCrossEntropy() if mixing else LabelSmoothingCrossEntropy(r.label_smoothing)
    if not mixing and r.label_smoothing == 0:
        criterion = nn.CrossEntropyLoss()
    scaler = torch.amp.GradScaler(device.type, enabled=amp and device.type == "cuda")  # bf16 needs no scaling
    if r.sched not in ("", "none"):
        from timm.scheduler import create_scheduler_v2

        warmup = r.warmup_epochs if r.sched_on_updates else int(round(r.warmup_epochs))
        decay = {"decay_epochs": r.decay_epochs or 1, "decay_rate": r.decay_rate, "min_lr": r.min_lr}
        steps = {"step_on_epochs": not r.sched_on_updates, "updates_per_epoch": len(loader)}
        scheduler, _ = create_scheduler_v2(
            optimizer, r.sched, r.epochs, warmup_lr=r.warmup_lr, warmup_epochs=warmup, **decay, **steps
        )
    return Components(
        model, bare, loader, len(loader), optimizer, scheduler, scaler, ema, mixup, criterion, sampler, generator
    )


def check_input(train_set: Dataset, model: nn.Module, device: torch.device) -> None:
    """Refuse, before the first epoch, a dataset whose images the model cannot take (one clear line)."""
    sample = train_set[0]
    x = sample[0] if isinstance(sample, (tuple, list)) else sample
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"the training set yields {type(x).__name__} images; fit() needs tensors (add a transform)")
    try:
        with train_mode(model, False), torch.no_grad():
            model(x.unsqueeze(0).to(device))
    except RuntimeError as e:
        raise DataError(
            f"{model_arch(model)} cannot take this dataset's images of size {tuple(x.shape)}: {str(e).splitlines()[0]}"
        ) from None
