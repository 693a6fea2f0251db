"""The parts a training run is built from: optimiser, scheduler, loss, EMA, mixup and the training loader."""

from __future__ import annotations

import functools
import random
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Sampler

from zoo.errors import ArgumentValueError, DataError
from zoo.training.checkpoint import model_arch

__all__ = ["SetupMixin", "SkipSampler", "amp_dtype", "cpu_has_native_bf16", "seed_worker"]


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 in hardware (AVX512-BF16 or AMX), where oneDNN runs bf16 convolutions
    natively. Elsewhere bf16 is emulated and slower than float32, so mixed precision stays off there."""
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
    """The autocast dtype of a recipe's ``amp`` on ``device``: float16 on CUDA (with a gradient scaler), bfloat16
    on a CPU with native bf16 (resnet20 trains 1.65x faster than in float32 there: benchmarks/cifar_epoch.py),
    else None."""
    if not amp:
        return None
    if device.type == "cuda":
        return torch.float16
    if device.type == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16
    return None


class SkipSampler(Sampler):
    """Wraps a sampler to drop its first ``skip`` indices (to resume in the middle of an epoch)."""

    def __init__(self, sampler: Sampler, skip: int = 0) -> None:
        self.sampler = sampler
        self.skip = skip

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.sampler.set_epoch(epoch)  # type: ignore[attr-defined]
        self.skip = skip

    def __iter__(self):
        it = iter(self.sampler)
        for _ in range(self.skip):
            next(it, None)
        yield from it

    def __len__(self) -> int:
        return max(0, len(self.sampler) - self.skip)  # type: ignore[arg-type]


def seed_worker(worker_id: int) -> None:
    # torch seeds each worker from the loader's generator; Python's and NumPy's RNGs (used by timm's
    # RandAugment and mixup) follow from that seed rather than being copies of the parent's.
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)


class SetupMixin:
    """Builds the trainer's components from its recipe, model and data."""

    def _build(self) -> None:
        from timm.optim import create_optimizer_v2

        r = self.recipe
        if self.use_cuda and not self.deterministic:
            torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick the fastest kernels
        self.model.to(self.device)
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.model_without_ddp = self.model
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.use_cuda else None
            self.model = DistributedDataParallel(self.model, device_ids=ids)
        self.train_loader = self._make_train_loader()
        self.steps_per_epoch = len(self.train_loader)
        if self.steps_per_epoch == 0:
            raise DataError(
                f"the training set ({len(self.train_set)} images) gives no batch of {self.batch_size}"  # type: ignore[arg-type]
            )
        self.optimizer = create_optimizer_v2(
            self.model_without_ddp, opt=r.opt, lr=r.lr, weight_decay=r.weight_decay, momentum=r.momentum,
            filter_bias_and_bn=r.filter_bias_and_bn,
        )  # fmt: skip
        self.scheduler = self._make_scheduler()
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp) if self.use_cuda else None  # bf16 needs no scaling
        self.ema = None
        if r.ema:
            from timm.utils import ModelEmaV3

            self.ema = ModelEmaV3(self.model_without_ddp, decay=r.ema_decay, use_warmup=True)
        self.mixup = None
        if self.use_mixup:
            from timm.data import Mixup

            self.mixup = Mixup(
                mixup_alpha=r.mixup, cutmix_alpha=r.cutmix, prob=r.mixup_prob, label_smoothing=r.label_smoothing,
                num_classes=self._num_classes(),
            )  # fmt: skip
        self.criterion = self._make_criterion()

    def _num_classes(self) -> int:
        n = getattr(self.model_without_ddp, "num_classes", None) or len(self.label_names)
        if not n:
            raise ArgumentValueError(
                "cannot tell the number of classes: give the model a num_classes or pass label_names"
            )
        return int(n)

    def _make_criterion(self) -> nn.Module:
        from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy

        if self.use_mixup:
            return SoftTargetCrossEntropy()
        if self.recipe.label_smoothing > 0:
            return LabelSmoothingCrossEntropy(smoothing=self.recipe.label_smoothing)
        return nn.CrossEntropyLoss()

    def _make_scheduler(self):
        r = self.recipe
        if r.sched in ("", "none"):
            return None
        from timm.scheduler import create_scheduler_v2

        per_update = r.sched_on_updates
        warmup = r.warmup_epochs if per_update else int(round(r.warmup_epochs))
        scheduler, _ = create_scheduler_v2(
            self.optimizer, sched=r.sched, num_epochs=r.epochs, decay_epochs=r.decay_epochs or 1,
            decay_rate=r.decay_rate, min_lr=r.min_lr, warmup_lr=r.warmup_lr, warmup_epochs=warmup,
            step_on_epochs=not per_update, updates_per_epoch=self.steps_per_epoch,
        )  # fmt: skip
        return scheduler

    def _make_train_loader(self):
        from zoo.data.tensor import TensorLoader

        r = self.recipe
        if self.tensor_data:
            return TensorLoader(
                self.train_set, self.batch_size, shuffle=True, drop_last=self.use_mixup, shift=r.crop_pad,  # type: ignore[arg-type]
                hflip=r.hflip, rand_augment=r.rand_augment, seed=r.seed, rank=self.rank, world_size=self.world,
                device=self.device,
            )  # fmt: skip
        from torch.utils.data import DistributedSampler

        # DistributedSampler is also a seeded, epoch-aware shuffler for one process.
        base = DistributedSampler(self.train_set, num_replicas=self.world, rank=self.rank, shuffle=True, seed=r.seed)
        self.sampler = SkipSampler(base)
        self.loader_generator = torch.Generator()
        return DataLoader(
            self.train_set, batch_size=self.batch_size, sampler=self.sampler, num_workers=r.workers,
            drop_last=self.use_mixup, pin_memory=self.use_cuda, worker_init_fn=seed_worker,
            generator=self.loader_generator, persistent_workers=False,
        )  # fmt: skip

    def _set_epoch(self, epoch: int, start_batch: int) -> None:
        if self.tensor_data:
            self.train_loader.set_epoch(epoch, start_batch)
        else:
            self.sampler.set_epoch(epoch, start_batch * self.batch_size)
            # Worker seeds come from this generator: fixed per epoch, so a resumed epoch augments the same way,
            # and per rank, so that the ranks of a DDP run augment their shares differently.
            seed = self.recipe.seed * 1_000_003 + epoch
            self.loader_generator.manual_seed(seed * 1_000_003 + self.rank if self.rank else seed)

    def _check_input(self) -> None:
        sample = self.train_set[0]
        x = sample[0] if isinstance(sample, (tuple, list)) else sample
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"the training set yields {type(x).__name__} images; fit() needs tensors (add a transform)")
        m = self.model_without_ddp
        was_training = m.training
        m.eval()
        try:
            with torch.no_grad():
                m(x.unsqueeze(0).to(self.device))
        except RuntimeError as e:
            raise DataError(
                f"{model_arch(m)} cannot take this dataset's images of size {tuple(x.shape)}: {str(e).splitlines()[0]}"
            ) from None
        finally:
            m.train(was_training)
