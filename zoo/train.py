"""Training: :func:`fit` for any model and ``torch.utils.data.Dataset``, and the ``zoo train`` command.

A run folder holds ``last.pt`` (everything needed to resume: model, optimiser, scheduler, AMP scaler, EMA,
RNG states, epoch, best metric; rewritten atomically every epoch), ``best.safetensors`` (the best weights),
``config.json`` (how to rebuild the model: architecture, arguments, pretrained_cfg with label names and
normalisation), ``run.json`` (dataset, recipe, command line, status), ``metrics.csv`` and ``curves.png``.

Runs are deterministic on CPU for a given seed: the data order and augmentation of every batch derive from
``(seed, epoch, batch)``, and the RNG states are checkpointed, so ``--resume`` after a crash (SIGKILL) or
Ctrl-C ends with exactly the metrics and weights of an uninterrupted run.

Under ``torchrun`` the model is wrapped in DistributedDataParallel (gloo on CPU, nccl on CUDA), each rank
trains on its share of every epoch, and only rank 0 logs and writes files.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import signal
import sys
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset, Sampler

from zoo.files import atomic_path, write_text_atomic
from zoo.recipes import Recipe, format_recipe, get_recipe, list_recipes

__all__ = ["FitResult", "TrainingDiverged", "add_arguments", "fit", "main", "seed_everything"]

CHECKPOINT_VERSION = 1


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is left as it was."""


# ---------------------------------------------------------------------------------------------------------------
# Small helpers


def _dist():
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


def _rank_world() -> tuple[int, int]:
    d = _dist()
    return (d.get_rank(), d.get_world_size()) if d else (0, 1)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """Every global RNG state, as tensors and plain values (loadable with ``weights_only=True``)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def atomic_torch_save(obj: Any, path: Path) -> None:
    """torch.save to a temporary file in the same folder, fsync, then rename over ``path``."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def write_json(obj: Any, path: Path) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:
    if isinstance(o, (tuple, set)):
        return list(o)
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, torch.Tensor):
        return o.tolist()
    return str(o)


class _SkipSampler(Sampler):
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


def _worker_init(worker_id: int) -> None:
    # torch seeds each worker from the loader's generator; Python's and NumPy's RNGs (used by timm's
    # RandAugment and mixup) follow from that seed rather than being copies of the parent's.
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)


def _denormalize(images: torch.Tensor, mean: Any, std: Any) -> torch.Tensor:
    if mean is None or std is None:
        lo = images.amin(dim=(1, 2, 3), keepdim=True)
        hi = images.amax(dim=(1, 2, 3), keepdim=True)
        return (images - lo) / (hi - lo).clamp(min=1e-6)
    m = torch.tensor(mean).view(1, -1, 1, 1)
    s = torch.tensor(std).view(1, -1, 1, 1)
    return (images * s + m).clamp(0, 1)


class _StopFlag:
    """Ctrl-C once: finish the current batch, save and stop. Twice: abort at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def __enter__(self) -> _StopFlag:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\ninterrupt: stopping after this batch and saving (Ctrl-C again to abort)", file=sys.stderr, flush=True)

    def __exit__(self, *exc: Any) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


# ---------------------------------------------------------------------------------------------------------------
# fit()


@dataclass
class FitResult:
    """What :func:`fit` returns."""

    out_dir: Path | None
    status: str  # finished, interrupted
    epochs_done: int
    best_metric: float | None
    best_epoch: int | None
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def last(self) -> dict[str, Any]:
        return self.history[-1] if self.history else {}


def _resolve_recipe(recipe: Recipe | str | None, dataset_kind: str | None) -> Recipe:
    if recipe is None:
        return get_recipe("fast", dataset_kind)
    if isinstance(recipe, str):
        return get_recipe(recipe, dataset_kind)
    return recipe


def _model_name(model: nn.Module) -> str:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    return cfg.get("architecture") or type(model).__name__


def fit(
    model: nn.Module,
    train_set: Dataset,
    val_set: Dataset | None = None,
    recipe: Recipe | str | None = None,
    out_dir: str | os.PathLike | None = None,
    *,
    resume: str | os.PathLike | None = None,
    loggers: tuple[str, ...] | list[str] = (),
    device: torch.device | str | None = None,
    deterministic: bool | None = None,
    label_names: list[str] | None = None,
    model_args: dict[str, Any] | None = None,
    run_info: dict[str, Any] | None = None,
    logger_options: dict[str, Any] | None = None,
    progress: bool = True,
) -> FitResult:
    """Train ``model`` on ``train_set`` and validate on ``val_set`` after every epoch.

    Args:
        model: any classifier returning logits; zoo models also get a ``config.json`` for publishing.
        train_set, val_set: datasets of ``(image tensor, int label)``. A :class:`zoo.data.TensorImageDataset`
            is batched and augmented as whole tensors; any other set goes through a ``DataLoader``.
        recipe: a :class:`~zoo.recipes.Recipe` or a recipe name (default ``fast``).
        out_dir: the run folder for checkpoints, metrics and plots (None: keep nothing on disk; no resume).
        resume: a run folder or ``last.pt`` to continue from.
        loggers: extra loggers, ``"tensorboard"`` and/or ``"visdom"`` (metrics.csv and curves.png are always
            written); ``logger_options`` passes ``visdom_server``, ``visdom_port``, ``visdom_env``.
        device: default CUDA when available, else CPU.
        deterministic: deterministic algorithms (default: on for CPU).
        label_names: class names (default: ``train_set.classes``).
        model_args: the ``create_model`` arguments, recorded in ``config.json``.
        run_info: extra facts for ``run.json`` (dataset, command line ...).

    Returns a :class:`FitResult`. Raises :class:`TrainingDiverged` when the loss becomes NaN or infinite.
    """
    trainer = _Trainer(
        model, train_set, val_set, recipe, out_dir, resume=resume, loggers=loggers, device=device,
        deterministic=deterministic, label_names=label_names, model_args=model_args, run_info=run_info,
        logger_options=logger_options or {}, progress=progress,
    )  # fmt: skip
    return trainer.run()


class _Trainer:
    def __init__(
        self,
        model: nn.Module,
        train_set: Dataset,
        val_set: Dataset | None,
        recipe: Recipe | str | None,
        out_dir: str | os.PathLike | None,
        *,
        resume: str | os.PathLike | None,
        loggers: tuple[str, ...] | list[str],
        device: torch.device | str | None,
        deterministic: bool | None,
        label_names: list[str] | None,
        model_args: dict[str, Any] | None,
        run_info: dict[str, Any] | None,
        logger_options: dict[str, Any],
        progress: bool,
    ) -> None:
        from zoo.data import TensorImageDataset

        self.rank, self.world = _rank_world()
        self.is_main = self.rank == 0
        self.run_info = dict(run_info or {})
        self.recipe = _resolve_recipe(recipe, self.run_info.get("dataset_kind"))
        if device is None:
            device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.deterministic = self.device.type == "cpu" if deterministic is None else deterministic
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.train_set, self.val_set = train_set, val_set
        self.tensor_data = isinstance(train_set, TensorImageDataset)
        self.label_names = list(label_names or getattr(train_set, "classes", None) or [])
        self.model_args = dict(model_args or {})
        self.logger_names = tuple(loggers)
        self.logger_options = logger_options
        self.show_progress = progress and self.is_main
        self.model = model
        self.resume_path = self._find_resume(resume) if resume else None
        self.checkpoint: dict[str, Any] | None = None
        if self.resume_path is not None:
            self.checkpoint = torch.load(self.resume_path, map_location="cpu", weights_only=True)
            saved = self.checkpoint.get("recipe")
            if saved:
                # The run continues under its own recipe; only a longer --epochs is taken from the caller.
                self.recipe = Recipe().replace(**{**saved, "epochs": self.recipe.epochs})
        elif self.out_dir is not None and (self.out_dir / "last.pt").exists():
            raise ValueError(
                f"{self.out_dir} already holds a run (last.pt); pass --resume to continue it or choose another --output"
            )
        r = self.recipe
        self.use_cuda = self.device.type == "cuda"
        self.amp = r.amp and self.use_cuda
        # channels_last: a large win for convolutions on CUDA and, measured here, for oneDNN on CPU too.
        self.channels_last = r.channels_last
        if r.batch_size % self.world:
            raise ValueError(f"batch size {r.batch_size} does not split evenly over {self.world} processes")
        self.batch_size = r.batch_size // self.world
        self.use_mixup = r.mixup > 0 or r.cutmix > 0
        self.batch_sleep = float(os.environ.get("ZOO_TRAIN_BATCH_SLEEP", "0") or 0)  # for the resume tests

    # -- set-up ------------------------------------------------------------------------------------------------

    @staticmethod
    def _find_resume(resume: str | os.PathLike) -> Path:
        path = Path(resume)
        if path.is_dir():
            path = path / "last.pt"
        if not path.is_file():
            raise FileNotFoundError(f"nothing to resume: {path} does not exist")
        return path

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
            raise ValueError(
                f"the training set ({len(self.train_set)} images) gives no batch of {self.batch_size}"  # type: ignore[arg-type]
            )
        self.optimizer = create_optimizer_v2(
            self.model_without_ddp, opt=r.opt, lr=r.lr, weight_decay=r.weight_decay, momentum=r.momentum,
            filter_bias_and_bn=r.filter_bias_and_bn,
        )  # fmt: skip
        self.scheduler = self._make_scheduler()
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp) if self.use_cuda else None
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
            raise ValueError("cannot tell the number of classes: give the model a num_classes or pass label_names")
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
        from zoo.data import TensorLoader

        r = self.recipe
        if self.tensor_data:
            return TensorLoader(
                self.train_set, self.batch_size, shuffle=True, drop_last=self.use_mixup, shift=r.crop_pad,  # type: ignore[arg-type]
                hflip=r.hflip, seed=r.seed, rank=self.rank, world_size=self.world, device=self.device,
            )  # fmt: skip
        from torch.utils.data import DistributedSampler

        # DistributedSampler is also a seeded, epoch-aware shuffler for one process.
        base = DistributedSampler(self.train_set, num_replicas=self.world, rank=self.rank, shuffle=True, seed=r.seed)
        self.sampler = _SkipSampler(base)
        self.loader_generator = torch.Generator()
        return DataLoader(
            self.train_set, batch_size=self.batch_size, sampler=self.sampler, num_workers=r.workers,
            drop_last=self.use_mixup, pin_memory=self.use_cuda, worker_init_fn=_worker_init,
            generator=self.loader_generator, persistent_workers=False,
        )  # fmt: skip

    def _set_epoch(self, epoch: int, start_batch: int) -> None:
        if self.tensor_data:
            self.train_loader.set_epoch(epoch, start_batch)
        else:
            self.sampler.set_epoch(epoch, start_batch * self.batch_size)
            # Worker seeds come from this generator: fixed per epoch, so a resumed epoch augments the same way.
            self.loader_generator.manual_seed(self.recipe.seed * 1_000_003 + epoch)

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
            raise ValueError(
                f"{_model_name(m)} cannot take this dataset's images of size {tuple(x.shape)}: {str(e).splitlines()[0]}"
            ) from None
        finally:
            m.train(was_training)

    # -- state ---------------------------------------------------------------------------------------------------

    def _eval_module(self) -> nn.Module:
        if self.ema is not None and self.recipe.eval_model == "ema":
            return self.ema.module
        return self.model_without_ddp

    def _state(self, epoch: int, batch: int, partial: dict[str, float] | None) -> dict[str, Any]:
        return {
            "version": CHECKPOINT_VERSION,
            "arch": _model_name(self.model_without_ddp),
            "epoch": epoch,  # the epoch to run next (or the one in progress when batch > 0)
            "batch": batch,  # batches of that epoch already trained
            "global_step": self.global_step,
            "model": self.model_without_ddp.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "ema": self.ema.module.state_dict() if self.ema is not None else None,
            "eval_weights": "ema" if self.ema is not None and self.recipe.eval_model == "ema" else "model",
            "rng": rng_state(),
            "loader_generator": self.loader_generator.get_state() if not self.tensor_data else None,
            "best_metric": self.best_metric,
            "best_epoch": self.best_epoch,
            "partial": partial,
            "history": self.history,
            "recipe": self.recipe.to_dict(),
        }

    def _load_state(self, ckpt: dict[str, Any]) -> None:
        if ckpt.get("version") != CHECKPOINT_VERSION:
            raise ValueError(f"{self.resume_path}: unsupported checkpoint version {ckpt.get('version')}")
        arch = _model_name(self.model_without_ddp)
        if ckpt.get("arch") != arch:
            raise ValueError(f"{self.resume_path} is a checkpoint of {ckpt.get('arch')}, not {arch}")
        self.model_without_ddp.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        if self.scheduler is not None and ckpt.get("scheduler") is not None:
            self.scheduler.load_state_dict(ckpt["scheduler"])
        if self.scaler is not None and ckpt.get("scaler") is not None:
            self.scaler.load_state_dict(ckpt["scaler"])
        if self.ema is not None and ckpt.get("ema") is not None:
            self.ema.module.load_state_dict(ckpt["ema"])
        self.global_step = ckpt["global_step"]
        self.best_metric, self.best_epoch = ckpt["best_metric"], ckpt["best_epoch"]
        self.history = list(ckpt.get("history") or [])
        self.start_epoch, self.start_batch = ckpt["epoch"], ckpt["batch"]
        self.partial = ckpt.get("partial")
        set_rng_state(ckpt["rng"])
        if ckpt.get("loader_generator") is not None and not self.tensor_data:
            self.loader_generator.set_state(ckpt["loader_generator"])

    def _save_checkpoint(self, epoch: int, batch: int = 0, partial: dict[str, float] | None = None) -> None:
        if self.out_dir is None or not self.is_main:
            return
        atomic_torch_save(self._state(epoch, batch, partial), self.out_dir / "last.pt")

    def _model_config(self) -> dict[str, Any]:
        m = self.model_without_ddp
        cfg = dict(getattr(m, "pretrained_cfg", None) or {})
        cfg["num_classes"] = self._num_classes()
        if self.label_names:
            cfg["label_names"] = list(self.label_names)
        mean, std = getattr(self.train_set, "mean", None), getattr(self.train_set, "std", None)
        if mean is not None and std is not None:
            cfg["mean"], cfg["std"] = tuple(mean), tuple(std)
        input_size = self.run_info.get("input_size")
        if input_size:
            cfg["input_size"] = tuple(input_size)
        return {
            "architecture": _model_name(m),
            "model_args": self.model_args,
            "num_classes": cfg["num_classes"],
            "num_features": getattr(m, "num_features", None),
            "label_names": cfg.get("label_names"),
            "pretrained_cfg": cfg,
            "weights": "best.safetensors",
        }

    def _write_run_json(self, status: str, error: str | None = None) -> None:
        if self.out_dir is None or not self.is_main:
            return
        write_json(
            {
                **self.run_info,
                "status": status,
                "error": error,
                "architecture": _model_name(self.model_without_ddp),
                "model_args": self.model_args,
                "label_names": self.label_names,
                "recipe": self.recipe.to_dict(),
                "device": str(self.device),
                "world_size": self.world,
                "deterministic": self.deterministic,
                "epochs_done": len(self.history),
                "best_metric": self.best_metric,
                "best_epoch": self.best_epoch,
                "last": self.history[-1] if self.history else None,
                "torch": torch.__version__,
                "updated": time.strftime("%Y-%m-%dT%H:%M:%S"),
            },
            self.out_dir / "run.json",
        )

    # -- the loop ------------------------------------------------------------------------------------------------

    def run(self) -> FitResult:
        previous_det = torch.are_deterministic_algorithms_enabled()
        if self.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        try:
            return self._run()
        finally:
            torch.use_deterministic_algorithms(previous_det)

    def _run(self) -> FitResult:
        r = self.recipe
        self.global_step = 0
        self.best_metric: float | None = None
        self.best_epoch: int | None = None
        self.history: list[dict[str, Any]] = []
        self.start_epoch, self.start_batch = 0, 0
        self.partial: dict[str, float] | None = None
        self._build()
        if self.checkpoint is not None:
            self._load_state(self.checkpoint)
        else:
            self._check_input()
        if self.out_dir is not None and self.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            write_json(self._model_config(), self.out_dir / "config.json")
        self.loggers = None
        if self.out_dir is not None and self.is_main:
            from zoo.loggers import create_loggers

            done = len(self.history) if self.checkpoint is not None else None
            self.loggers = create_loggers(
                self.out_dir, self.logger_names, resume_epoch=done, title=f"{_model_name(self.model_without_ddp)}",
                **self.logger_options,
            )  # fmt: skip
        self._write_run_json("running")
        if self.is_main:
            where = f" -> {self.out_dir}" if self.out_dir else ""
            resumed = f", resumed at epoch {self.start_epoch + 1} batch {self.start_batch}" if self.checkpoint else ""
            print(
                f"training {_model_name(self.model_without_ddp)} for {r.epochs} epochs ({r.name} recipe, "
                f"{len(self.train_set)} images, batch {r.batch_size}, {self.steps_per_epoch} steps/epoch, "  # type: ignore[arg-type]
                f"{self.device}{f' x{self.world}' if self.world > 1 else ''}){resumed}{where}",
                flush=True,
            )
        status = "finished"
        with _StopFlag() as stop:
            self.stop = stop
            try:
                for epoch in range(self.start_epoch, r.epochs):
                    start_batch = self.start_batch if epoch == self.start_epoch else 0
                    train_metrics = self._train_epoch(epoch, start_batch)
                    if train_metrics is None:  # interrupted mid-epoch, already saved
                        status = "interrupted"
                        break
                    self._end_epoch(epoch, train_metrics)
                    if self._should_stop():
                        status = "interrupted" if epoch + 1 < r.epochs else "finished"
                        break
            except TrainingDiverged as e:
                self._write_run_json("diverged", str(e))
                raise
            finally:
                if self.loggers is not None:
                    self.loggers.close()
        self._write_run_json(status)
        if self.is_main and status == "interrupted" and self.out_dir is not None:
            print(f"interrupted: saved {self.out_dir / 'last.pt'}; continue with --resume {self.out_dir}", flush=True)
        return FitResult(self.out_dir, status, len(self.history), self.best_metric, self.best_epoch, self.history)

    def _should_stop(self) -> bool:
        flag = torch.tensor([1.0 if self.stop.requested else 0.0])
        d = _dist()
        if d is not None:
            flag = flag.to(self.device)
            d.all_reduce(flag, op=d.ReduceOp.MAX)
        return bool(flag.item())

    def _train_epoch(self, epoch: int, start_batch: int) -> dict[str, float] | None:
        r = self.recipe
        model, optimizer = self.model, self.optimizer
        model.train()
        self._set_epoch(epoch, start_batch)
        part = self.partial if (start_batch and self.partial) else None
        loss_sum = part["loss_sum"] if part else 0.0
        correct = part["correct"] if part else 0.0
        count = part["count"] if part else 0.0
        elapsed = part["time"] if part else 0.0
        self.partial = None
        t0 = time.perf_counter()
        autocast = torch.autocast("cuda", dtype=torch.float16) if self.amp else nullcontext()
        d = _dist()
        bar = None
        if self.show_progress:
            from zoo.loggers import progress

            bar = progress(total=self.steps_per_epoch, initial=start_batch, desc=f"epoch {epoch + 1}/{r.epochs}",
                           unit="batch")  # fmt: skip
        log_every = max(1, self.steps_per_epoch // 20)
        batch_idx = start_batch
        for images, targets in self.train_loader:
            images = images.to(self.device, non_blocking=True)
            targets = targets.to(self.device, non_blocking=True)
            if self.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            hard_targets = targets
            if self.mixup is not None:
                images, targets = self.mixup(images, targets)
            with autocast:
                logits = model(images)
                loss = self.criterion(logits, targets)
            loss_value = loss.detach()
            if d is not None:
                # Every rank must see a divergence or a Ctrl-C at the same step, or the others would hang.
                check = torch.stack([loss_value.float(), torch.tensor(float(self.stop.requested), device=loss.device)])
                check[0] = 0.0 if torch.isfinite(check[0]) else 1.0
                d.all_reduce(check, op=d.ReduceOp.MAX)
                finite, stop_now = check[0].item() == 0.0, check[1].item() > 0
            else:
                finite, stop_now = bool(torch.isfinite(loss_value)), False
            if not finite:
                raise TrainingDiverged(self._divergence_message(epoch, batch_idx, float(loss_value)))
            optimizer.zero_grad(set_to_none=True)
            if self.scaler is not None:
                self.scaler.scale(loss).backward()
                if r.grad_clip:
                    self.scaler.unscale_(optimizer)
                    nn.utils.clip_grad_norm_(model.parameters(), r.grad_clip)
                self.scaler.step(optimizer)
                self.scaler.update()
            else:
                loss.backward()
                if r.grad_clip:
                    nn.utils.clip_grad_norm_(model.parameters(), r.grad_clip)
                optimizer.step()
            self.global_step += 1
            if self.ema is not None:
                self.ema.update(self.model_without_ddp, step=self.global_step)
            if self.scheduler is not None and r.sched_on_updates:
                self.scheduler.step_update(num_updates=self.global_step)
            n = len(hard_targets)
            loss_sum += float(loss_value) * n
            count += n
            if self.mixup is None:
                correct += float((logits.detach().argmax(1) == hard_targets).sum())
            batch_idx += 1
            if bar is not None:
                bar.update(1)
            if batch_idx % log_every == 0:
                lr = optimizer.param_groups[0]["lr"]
                if bar is not None:
                    spent = elapsed + time.perf_counter() - t0
                    bar.set_postfix(loss=f"{loss_sum / count:.4f}", lr=f"{lr:.2e}",
                                    img_s=f"{count * self.world / max(spent, 1e-9):.0f}")  # fmt: skip
                if self.loggers is not None:
                    self.loggers.log_step(self.global_step, {"loss": float(loss_value), "lr": lr})
            if self.batch_sleep:
                time.sleep(self.batch_sleep)
            if (self.stop.requested or stop_now) and batch_idx < self.steps_per_epoch:
                if bar is not None:
                    bar.close()
                partial = {"loss_sum": loss_sum, "correct": correct, "count": count,
                           "time": elapsed + time.perf_counter() - t0}  # fmt: skip
                self.stop.requested = True
                self._save_checkpoint(epoch, batch_idx, partial)
                return None
        if bar is not None:
            bar.close()
        sums = torch.tensor([loss_sum, correct, count], dtype=torch.float64, device=self.device)
        if d is not None:
            d.all_reduce(sums)
            # Each rank's BatchNorm statistics saw only its own batches: average them so every rank (and
            # the checkpoint) holds the same model, as timm's train script does.
            from timm.utils import distribute_bn

            distribute_bn(self.model_without_ddp, self.world, reduce=True)
            if self.ema is not None:
                distribute_bn(self.ema.module, self.world, reduce=True)
        loss_sum, correct, count = sums.tolist()
        return {
            "train_loss": loss_sum / max(count, 1),
            "train_acc1": None if self.mixup is not None else 100.0 * correct / max(count, 1),
            "epoch_time": elapsed + time.perf_counter() - t0,
            "img_per_s": count / max(elapsed + time.perf_counter() - t0, 1e-9),
        }

    def _divergence_message(self, epoch: int, batch: int, value: float) -> str:
        lr = self.optimizer.param_groups[0]["lr"]
        kept = (
            f"the last good checkpoint, {self.out_dir / 'last.pt'} (after epoch {len(self.history)}), is kept"
            if self.out_dir is not None and (self.out_dir / "last.pt").exists()
            else "no checkpoint was written yet"
        )
        return (
            f"the training loss became {value} at epoch {epoch + 1}, batch {batch + 1} (lr {lr:.3g}); stopping. "
            f"{kept}. Lower the learning rate (--lr) or check the data for NaN/inf values."
        )

    def _end_epoch(self, epoch: int, train_metrics: dict[str, float]) -> None:
        from zoo.evaluate import evaluate

        r = self.recipe
        if self.scheduler is not None and not r.sched_on_updates:
            self.scheduler.step(epoch + 1)
        row: dict[str, Any] = {"epoch": epoch + 1, "lr": self.optimizer.param_groups[0]["lr"], **train_metrics}
        if self.val_set is not None:
            results = evaluate(
                self._eval_module(), self.val_set, batch_size=r.eval_batch_size, workers=r.workers,
                device=self.device, num_classes=self._num_classes(), label_names=self.label_names or None,
                amp=self.amp, channels_last=self.channels_last,
            )  # fmt: skip
            row.update(val_loss=results["loss"], val_acc1=results["acc1"], val_acc5=results["acc5"])
            metric = results["acc1"]
        else:
            metric = -train_metrics["train_loss"]
        row["time"] = time.time()
        self.history.append(row)
        is_best = self.best_metric is None or metric > self.best_metric
        if is_best:
            self.best_metric, self.best_epoch = metric, epoch + 1
        if self.is_main:
            if self.out_dir is not None:
                if is_best:
                    from zoo.weights import save_weights

                    # With the config in its metadata, create_model(arch, checkpoint_path=...) rebuilds the
                    # model as trained: classes, channels, stem, label names and normalisation.
                    config = self._model_config()
                    meta = {
                        "architecture": config["architecture"], "epoch": str(epoch + 1), "metric": repr(metric),
                        "zoo.model_args": self.model_args, "zoo.pretrained_cfg": config["pretrained_cfg"],
                    }  # fmt: skip
                    save_weights(self._eval_module().state_dict(), self.out_dir / "best.safetensors", meta)
                self._save_checkpoint(epoch + 1)
                self._write_run_json("running")
            if self.loggers is not None:
                self.loggers.log_epoch(epoch + 1, row, self.history)
                if self.loggers.wants_samples:
                    self._log_samples(epoch + 1)
            print(self._epoch_line(row, is_best), flush=True)

    def _log_samples(self, epoch: int, n: int = 16) -> None:
        dataset = self.val_set if self.val_set is not None else self.train_set
        step = max(1, len(dataset) // n)  # type: ignore[arg-type]
        items = [dataset[i] for i in range(0, min(len(dataset), step * n), step)][:n]  # type: ignore[arg-type]
        images = torch.stack([x for x, _ in items])
        labels = [int(y) for _, y in items]
        module = self._eval_module()
        was_training = module.training
        module.eval()
        with torch.no_grad():
            x = images.to(self.device)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            preds = module(x).argmax(1).tolist()
        module.train(was_training)
        names = self.label_names or [str(i) for i in range(self._num_classes())]
        titles = [f"{names[p]} / {names[t]}" for p, t in zip(preds, labels, strict=True)]
        shown = _denormalize(images, getattr(dataset, "mean", None), getattr(dataset, "std", None))
        self.loggers.log_samples(epoch, shown, titles)

    def _epoch_line(self, row: dict[str, Any], is_best: bool) -> str:
        parts = [f"epoch {row['epoch']}/{self.recipe.epochs}", f"train loss {row['train_loss']:.4f}"]
        if row.get("train_acc1") is not None:
            parts.append(f"acc {row['train_acc1']:.2f}")
        if row.get("val_acc1") is not None:
            parts.append(f"val loss {row['val_loss']:.4f} top-1 {row['val_acc1']:.2f} top-5 {row['val_acc5']:.2f}")
        parts.append(f"lr {row['lr']:.2e}")
        parts.append(f"{row['epoch_time']:.1f}s ({row['img_per_s'] * self.world:.0f} img/s)")
        return "  ".join(parts) + ("  *" if is_best else "")


# ---------------------------------------------------------------------------------------------------------------
# The command line

# CLI option -> recipe field, for the options that override a recipe value.
_OVERRIDES = {
    "epochs": int, "batch_size": int, "opt": str, "lr": float, "momentum": float, "weight_decay": float,
    "sched": str, "decay_epochs": float, "decay_rate": float, "warmup_epochs": float, "warmup_lr": float,
    "min_lr": float, "label_smoothing": float, "mixup": float, "cutmix": float, "ema_decay": float,
    "grad_clip": float, "crop_pad": int, "hflip": float, "rand_augment": str, "workers": int, "seed": int,
    "eval_batch_size": int,
}  # fmt: skip
_BOOL_OVERRIDES = ("ema", "amp", "channels_last")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", nargs="?", help="model name (arch, or arch.tag with --pretrained)")
    data = parser.add_argument_group("data")
    data.add_argument("--dataset", help="mnist, fashion_mnist, cifar10, cifar100, imagefolder (or imagefolder:PATH)")
    data.add_argument("--data-dir", help="the dataset's folder (see docs/training.md for the layouts)")
    data.add_argument("--val-split", type=float, help="image folders without val/: held-out fraction (default 0.1)")
    data.add_argument("--download", action="store_true", help="let torchvision download CIFAR (needs internet)")
    data.add_argument("--strict-images", action="store_true", help="fail on an unreadable image instead of skipping it")
    data.add_argument("--train-subset", type=int, help="train on a seeded random subset of this many images")
    data.add_argument("--val-subset", type=int, help="validate on a seeded random subset of this many images")

    rec = parser.add_argument_group("recipe (any option below overrides the recipe's value)")
    rec.add_argument("--recipe", default="fast", help=f"one of {', '.join(list_recipes())} (default fast)")
    rec.add_argument("--print-recipe", action="store_true", help="print the resolved recipe and exit")
    for name, typ in _OVERRIDES.items():
        rec.add_argument(f"--{name.replace('_', '-')}", type=typ, default=None, metavar=typ.__name__.upper())
    for name in _BOOL_OVERRIDES:
        rec.add_argument(f"--{name.replace('_', '-')}", action=argparse.BooleanOptionalAction, default=None)
    rec.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="set any recipe field")

    mdl = parser.add_argument_group("model")
    mdl.add_argument("--pretrained", action="store_true", help="start from the model's published weights")
    mdl.add_argument("--stem", choices=("imagenet", "cifar"), help="ResNet/VGG stem (cifar for 32x32 inputs)")
    mdl.add_argument("--model-arg", action="append", default=[], metavar="NAME=VALUE", help="builder keyword argument")

    run = parser.add_argument_group("run")
    run.add_argument("--output", help="run folder (default runs/<model>-<dataset>-<time>)")
    run.add_argument("--resume", nargs="?", const="", help="continue the run in --output, or in this folder/last.pt")
    run.add_argument("--logger", action="append", default=[], choices=("tensorboard", "visdom"),
                     help="extra live logger (repeatable); metrics.csv and curves.png are always written")  # fmt: skip
    run.add_argument("--visdom-server", default="http://localhost")
    run.add_argument("--visdom-port", type=int, default=8097)
    run.add_argument("--visdom-env", help="Visdom environment (default: the run folder's name)")
    run.add_argument("--device", default="auto", help="auto, cpu, cuda")
    run.add_argument("--deterministic", action=argparse.BooleanOptionalAction, default=None,
                     help="deterministic algorithms (default: on for CPU)")  # fmt: skip
    run.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")


def _parse_value(text: str) -> Any:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    return text


def _key_values(items: list[str], what: str) -> dict[str, Any]:
    out = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise ValueError(f"{what} {item!r}: expected NAME=VALUE")
        out[key.strip().replace("-", "_")] = _parse_value(value.strip())
    return out


def resolve_recipe_from_args(args: argparse.Namespace, dataset_kind: str | None) -> Recipe:
    """The named recipe for the dataset kind, with every option given on the command line applied."""
    overrides = {k: getattr(args, k) for k in (*_OVERRIDES, *_BOOL_OVERRIDES) if getattr(args, k, None) is not None}
    recipe = get_recipe(args.recipe, dataset_kind)
    typed = {f: type(getattr(recipe, f)) for f in recipe.to_dict()}
    extra = _key_values(args.set, "--set")
    for k, v in extra.items():
        if k in typed and typed[k] is float and isinstance(v, int):
            extra[k] = float(v)
        elif k in typed and typed[k] is str:
            extra[k] = str(v)
    return recipe.replace(**{**extra, **overrides})


def _subset(dataset: Dataset, n: int | None, seed: int) -> Dataset:
    from zoo.data import TensorImageDataset

    if n is None or n >= len(dataset):  # type: ignore[arg-type]
        return dataset
    if n < 1:
        raise ValueError(f"a subset needs at least one image, got {n}")
    idx = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:n]  # type: ignore[arg-type]
    if isinstance(dataset, TensorImageDataset):
        return dataset.subset(idx)
    from torch.utils.data import Subset

    sub = Subset(dataset, idx.tolist())
    for attr in ("classes", "mean", "std"):
        if hasattr(dataset, attr):
            setattr(sub, attr, getattr(dataset, attr))
    return sub


def _init_distributed(device_arg: str) -> tuple[int, int, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() if device_arg == "auto" else device_arg.startswith("cuda")
    device = torch.device(f"cuda:{local_rank}" if use_cuda else "cpu") if device_arg in ("auto", "cuda") else None
    if device is None:
        device = torch.device(device_arg)
    if world > 1:
        import torch.distributed as dist

        if not dist.is_initialized():
            if use_cuda:
                torch.cuda.set_device(device)
            dist.init_process_group(backend="nccl" if use_cuda else "gloo")
        return dist.get_rank(), dist.get_world_size(), device
    return 0, 1, device


def main(args: argparse.Namespace) -> int:
    from zoo.data import Augment, create_datasets, parse_dataset

    dataset_kind = parse_dataset(args.dataset, args.data_dir or ".")[0] if args.dataset else None
    recipe = resolve_recipe_from_args(args, dataset_kind)
    if args.print_recipe:
        print(f"# recipe {recipe.name}" + (f" for {dataset_kind}" if dataset_kind else ""))
        print(format_recipe(recipe))
        return 0
    if not args.model:
        raise ValueError("name the model to train, e.g. `zoo train mnist_cnn --dataset mnist --data-dir DATA`")
    if not args.dataset:
        raise ValueError("--dataset is required (mnist, fashion_mnist, cifar10, cifar100, imagefolder:PATH)")
    if args.threads:
        torch.set_num_threads(args.threads)

    from zoo.factory import create_model
    from zoo.registry import split_model_name_tag

    rank, world, device = _init_distributed(args.device)
    try:
        out_dir = _output_dir(args, dataset_kind)
        if args.resume is not None:
            resume_path = Path(args.resume) if args.resume else out_dir
            if resume_path.is_file():
                out_dir = resume_path.parent
            elif args.resume:
                out_dir = resume_path
            saved = _saved_recipe(out_dir)
            if saved:
                recipe = Recipe().replace(**{**saved, "epochs": args.epochs or saved["epochs"]})
        seed_everything(recipe.seed)
        model_kwargs: dict[str, Any] = _key_values(args.model_arg, "--model-arg")
        if args.stem:
            model_kwargs["stem"] = args.stem
        arch = split_model_name_tag(args.model)[0]
        # The dataset decides classes and channels; a model built first tells an image folder its input size.
        aug = Augment(crop_pad=recipe.crop_pad, hflip=recipe.hflip, rand_augment=recipe.rand_augment)
        eval_transform, normalization, cfg = None, None, None
        if dataset_kind == "imagefolder" and not args.pretrained:
            cfg = create_model(arch, **model_kwargs).pretrained_cfg
        if args.pretrained:
            pre = create_model(args.model, pretrained=True, **model_kwargs)
            cfg = pre.pretrained_cfg
            normalization = (cfg["mean"], cfg["std"])
            try:
                from zoo.transforms import create_transform

                if dataset_kind in ("cifar10", "cifar100", "imagefolder"):
                    eval_transform = create_transform(cfg, training=False)
            except ImportError:
                pass
        train_set, val_set, info = create_datasets(
            args.dataset, args.data_dir, model_cfg=cfg, augment=aug, val_split=args.val_split, seed=recipe.seed,
            strict_images=args.strict_images, download=args.download and rank == 0, eval_transform=eval_transform,
            normalization=normalization if normalization and len(normalization[0]) in (1, 3) else None,
        )  # fmt: skip
        train_set = _subset(train_set, args.train_subset, recipe.seed)
        if val_set is not None:
            val_set = _subset(val_set, args.val_subset, recipe.seed + 1)
        model_kwargs.update(num_classes=info.num_classes, in_chans=info.in_chans)
        model = create_model(args.model, pretrained=args.pretrained, **model_kwargs)
        run_info = {
            "dataset": args.dataset,
            "dataset_kind": info.name,
            "data_dir": info.root,
            "data": info.extra,
            "input_size": info.input_size,
            "train_images": len(train_set),
            "val_images": len(val_set) if val_set is not None else 0,
            "val_split": args.val_split,
            "seed": recipe.seed,
            "pretrained": args.pretrained,
            "command": _process_command(args),
            "zoo_command": "zoo train " + shlex.join(_argv_for(args)),
        }
        result = fit(
            model, train_set, val_set, recipe, out_dir, resume=out_dir if args.resume is not None else None,
            loggers=args.logger, device=device, deterministic=args.deterministic, label_names=info.classes,
            model_args=model_kwargs, run_info=run_info,
            logger_options={"visdom_server": args.visdom_server, "visdom_port": args.visdom_port,
                            "visdom_env": args.visdom_env},
        )  # fmt: skip
    finally:
        d = _dist()
        if d is not None:
            d.destroy_process_group()
    if rank == 0 and result.status == "finished":
        best = f"{result.best_metric:.2f} % at epoch {result.best_epoch}" if result.best_metric is not None else "-"
        print(f"done: best val top-1 {best}; run folder {out_dir}")
    return 130 if result.status == "interrupted" else 0


def _argv_for(args: argparse.Namespace) -> list[str]:
    # zoo.cli.main records the words after `train`; a caller that built the Namespace itself has sys.argv.
    if getattr(args, "argv", None) is not None:
        return list(args.argv)
    argv = sys.argv[1:]
    return argv[1:] if argv and argv[0] == "train" else argv


def _process_command(args: argparse.Namespace) -> str:
    """The command line as typed (torchrun, python -m zoo.train ...) when this process is that command."""
    argv = _argv_for(args)
    process = [os.path.basename(sys.argv[0]), *sys.argv[1:]]
    if not argv or process[-len(argv) :] == argv:
        return shlex.join(process)
    return "zoo train " + shlex.join(argv)


def _output_dir(args: argparse.Namespace, dataset_kind: str | None) -> Path:
    if args.output:
        return Path(args.output)
    if args.resume:
        p = Path(args.resume)
        return p.parent if p.is_file() else p
    if args.resume is not None:
        raise ValueError("--resume without a path needs --output RUN_FOLDER")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{args.model.replace('.', '_')}-{dataset_kind}-{stamp}"


def _saved_recipe(out_dir: Path) -> dict[str, Any] | None:
    path = out_dir / "last.pt"
    if not path.is_file():
        raise FileNotFoundError(f"nothing to resume: {path} does not exist")
    run = out_dir / "run.json"
    if run.is_file():
        return json.loads(run.read_text()).get("recipe")
    return None


if __name__ == "__main__":
    # `python -m zoo.train ...` (as torchrun runs it) is `zoo train ...`, with the same parser and errors.
    from zoo.cli import main as cli_main

    sys.exit(cli_main(["train", *sys.argv[1:]]))
