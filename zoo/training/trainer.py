"""Training: :func:`fit` for any model and ``torch.utils.data.Dataset``.

A run folder holds ``last.pt`` (everything needed to resume: model, optimiser, scheduler, AMP scaler, EMA,
RNG states, epoch, best metric; rewritten atomically every epoch), ``best.safetensors`` (the kept weights:
the best top-1 on a validation set held out of the training data, else the last epoch; a test set is only
reported), ``config.json`` (how to rebuild the model: architecture, arguments, pretrained_cfg with label
names and normalisation), ``run.json`` (dataset, recipe, command line, status), ``metrics.csv``, ``curves.png``.

Runs are deterministic on CPU for a given seed: the data order and augmentation of every batch derive from
``(seed, epoch, batch)``, and the RNG states are checkpointed, so ``--resume`` after a crash (SIGKILL) or
Ctrl-C ends with exactly the metrics and weights of an uninterrupted run.

Under ``torchrun`` the model is wrapped in DistributedDataParallel (gloo on CPU, nccl on CUDA), each rank
trains on its share of every epoch with its own augmentation stream (seed + rank; each rank's RNG states
are saved in the checkpoint and restored on resume), only rank 0 logs and writes files, and every rank
leaves :func:`fit` together, once those files are written.

``ZOO_TRAIN_SIGNAL=SIGKILL@13`` (or ``SIGINT@13``) makes the process signal itself right after optimiser
step 13: the crash and Ctrl-C recovery tests stop runs at a known point this way (:mod:`.signals`).

A run locks its folder while it writes there, clears temporary files a killed run left, and ends ``run.json``
with a final status: ``finished``, ``interrupted`` (Ctrl-C or SIGTERM), ``diverged`` or ``failed: <error>``.
A resume trains the same model, dataset, classes and recipe (``epochs``, ``workers``, eval batch may change).
"""

from __future__ import annotations

import os
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from torch.utils.data import Dataset

from zoo.errors import RecipeError, RunError, TrainingDiverged
from zoo.training.checkpoint import CheckpointMixin, find_resume, load_checkpoint, model_arch, run_lock, seed_everything
from zoo.training.components import SetupMixin, amp_dtype
from zoo.training.distributed import any_rank, current_group, rank_world
from zoo.training.recipes import Recipe, resolve_recipe
from zoo.training.reporting import ReportingMixin
from zoo.training.signals import SignalHook, StopFlag
from zoo.utils.files import remove_stale_temp_files, write_json

__all__ = ["FitResult", "Trainer", "TrainingDiverged", "fit"]


# ---------------------------------------------------------------------------------------------------------------
# fit()


@dataclass
class FitResult:
    """What :func:`fit` returns."""

    out_dir: Path | None
    status: str  # finished, interrupted
    epochs_done: int
    best_metric: float | None  # the value of best_metric_name at best_epoch
    best_epoch: int | None
    history: list[dict[str, Any]] = field(default_factory=list)
    # What chose the kept epoch: "val_acc1" (highest top-1 on the validation set, held out of the training
    # data) or, without a validation set, "last_epoch" (best_metric is then the epoch number).
    best_metric_name: str = "val_acc1"
    stopped_by: int | None = None  # the signal (SIGINT, SIGTERM) that interrupted the run
    warnings: list[str] = field(default_factory=list)  # e.g. kept weights that score about chance

    @property
    def last(self) -> dict[str, Any]:
        return self.history[-1] if self.history else {}


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
    test_set: Dataset | None = None,
) -> FitResult:
    """Train ``model`` on ``train_set``; validate on ``val_set`` and test on ``test_set`` after every epoch.

    Args:
        model: any classifier returning logits; zoo models also get a ``config.json`` for publishing.
        train_set: a dataset of ``(image tensor, int label)``. A :class:`zoo.data.TensorImageDataset` is
            batched and augmented as whole tensors; any other set goes through a ``DataLoader``.
        val_set: the validation set, in the same form, held out of the training data: it chooses the kept
            epoch (None: the last epoch is kept).
        test_set: a test set, evaluated for reporting only (``test_acc1`` ...): it never chooses weights.
        recipe: a :class:`~zoo.training.recipes.Recipe` or a recipe name (default ``fast``).
        out_dir: the run folder for checkpoints, metrics and plots (None: keep nothing on disk; no resume).
        resume: a run folder or ``last.pt`` to continue from.
        loggers: extra loggers, ``"tensorboard"`` and/or ``"visdom"`` (metrics.csv and curves.png are always
            written); ``logger_options`` passes ``visdom_server``, ``visdom_port``, ``visdom_env``.
        device: default CUDA when available, else CPU.
        deterministic: deterministic algorithms (default: on for CPU).
        label_names: class names (default: ``train_set.classes``).
        model_args: the ``create_model`` arguments, recorded in ``config.json``.
        run_info: extra facts for ``run.json`` (dataset, command line ...).

    The kept epoch is the one with the highest validation top-1 (without ``val_set``: the last one;
    ``FitResult.best_metric_name`` says which). On return, finished or interrupted, ``model`` holds
    the weights of that epoch: the EMA weights when the recipe evaluates them
    (``eval_model="ema"``), else the model's own weights of that epoch, the same as ``best.safetensors``.
    ``last.pt`` keeps the last raw weights, optimiser and EMA state for ``resume``.

    Returns a :class:`FitResult`. Raises :class:`TrainingDiverged` when the loss becomes NaN or infinite,
    and :class:`zoo.errors.RunError` when another process is writing to ``out_dir`` or a resume would change
    the run's model, dataset, classes or recipe (only ``epochs``, ``workers`` and ``eval_batch_size`` may).
    """
    rank, _ = rank_world()
    out = Path(out_dir) if out_dir is not None and rank == 0 else None
    if out is not None and out.exists() and not out.is_dir():
        raise RunError(f"{out} is a file, not a run folder", hint="give a folder (it is created if missing)")
    with run_lock(out):  # rank 0 writes the run's files: it holds the folder
        trainer = Trainer(
            model, train_set, val_set, recipe, out_dir, resume=resume, loggers=loggers, device=device,
            deterministic=deterministic, label_names=label_names, model_args=model_args, run_info=run_info,
            logger_options=logger_options or {}, progress=progress, test_set=test_set,
        )  # fmt: skip
        return trainer.run()


class Trainer(SetupMixin, CheckpointMixin, ReportingMixin):
    """One training run; :func:`fit` is its public face."""

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
        test_set: Dataset | None = None,
    ) -> None:
        from zoo.data.tensor import TensorImageDataset

        self.rank, self.world = rank_world()
        self.is_main = self.rank == 0
        self.run_info = dict(run_info or {})
        self.recipe = resolve_recipe(recipe, self.run_info.get("dataset_kind"))
        if device is None:
            device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.deterministic = self.device.type == "cpu" if deterministic is None else deterministic
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.train_set, self.val_set, self.test_set = train_set, val_set, test_set
        self.tensor_data = isinstance(train_set, TensorImageDataset)
        self.label_names = list(label_names or getattr(train_set, "classes", None) or [])
        self.model_args = dict(model_args or {})
        self.logger_names = tuple(loggers)
        self.logger_options = logger_options
        self.show_progress = progress and self.is_main
        self.model = model
        if min(self.recipe.epochs, self.recipe.batch_size) < 1:
            raise RecipeError(f"epochs={self.recipe.epochs} and batch_size={self.recipe.batch_size} must be 1 or more")
        self.resume_path = find_resume(resume) if resume else None
        self.checkpoint: dict[str, Any] | None = None
        if self.resume_path is not None:
            self.checkpoint = load_checkpoint(self.resume_path)
            self._check_resume(self.checkpoint)
            saved = self.checkpoint.get("recipe")
            if saved:
                # The run continues under its own recipe (_check_resume allowed only epochs, workers, eval batch).
                self.recipe = Recipe().replace(**self._resume_settings(saved))
        elif self.out_dir is not None and (self.out_dir / "last.pt").exists():
            raise RunError(
                f"{self.out_dir} already holds a run (last.pt)",
                hint="pass --resume to continue it or choose another --output",
            )
        r = self.recipe
        self.use_cuda = self.device.type == "cuda"
        self.amp_dtype = amp_dtype(self.device, r.amp)
        self.amp = self.amp_dtype is not None
        # channels_last: a large win for convolutions on CUDA and, measured here, for oneDNN on CPU too.
        self.channels_last = r.channels_last
        if r.batch_size % self.world:
            raise RecipeError(f"batch size {r.batch_size} does not split evenly over {self.world} processes")
        self.batch_size = r.batch_size // self.world
        self.use_mixup = r.mixup > 0 or r.cutmix > 0
        self.best_metric_name = "val_acc1" if val_set is not None else "last_epoch"
        self.signal_hook = SignalHook()  # ZOO_TRAIN_SIGNAL: stop at a chosen step, for the recovery tests

    def run(self) -> FitResult:
        previous = torch.are_deterministic_algorithms_enabled(), torch.utils.deterministic.fill_uninitialized_memory
        if self.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.utils.deterministic.fill_uninitialized_memory = False  # a NaN memset per activation, a debug aid
        try:
            return self._run()
        finally:
            torch.use_deterministic_algorithms(previous[0])
            torch.utils.deterministic.fill_uninitialized_memory = previous[1]

    def _run(self) -> FitResult:
        r = self.recipe
        self.global_step = 0
        self.best_metric: float | None = None
        self.best_epoch: int | None = None
        self.history: list[dict[str, Any]] = []
        self.start_epoch, self.start_batch = 0, 0
        self.partial: dict[str, float] | None = None
        self.best_state: dict[str, torch.Tensor] | None = None
        self.schedule_changes: list[dict[str, Any]] = []
        if self.out_dir is not None and self.is_main:
            remove_stale_temp_files(self.out_dir)  # a run killed mid-write left them; we hold the folder
        self._build()
        if self.checkpoint is not None:
            self._load_state(self.checkpoint)
        else:
            if self.world > 1:
                # Each rank its own augmentation, mixup and dropout draws (seed + rank, as timm's train script);
                # the model needs no common seed: DDP gives every rank rank 0's parameters.
                seed_everything(r.seed + self.rank)
            self._check_input()
        self.loggers = None
        if self.out_dir is not None and self.is_main:
            from zoo.training.loggers import create_loggers

            self.out_dir.mkdir(parents=True, exist_ok=True)
            write_json(self._model_config(), self.out_dir / "config.json")
            done = len(self.history) if self.checkpoint is not None else None
            step = self.global_step if self.checkpoint is not None else None
            self.loggers = create_loggers(
                self.out_dir, self.logger_names, resume_epoch=done, resume_step=step,
                title=f"{model_arch(self.model_without_ddp)}", **self.logger_options,
            )  # fmt: skip
        self._write_run_json("running")
        if self.is_main:
            where = f" -> {self.out_dir}" if self.out_dir else ""
            resumed = f", resumed at epoch {self.start_epoch + 1} batch {self.start_batch}" if self.checkpoint else ""
            print(
                f"training {model_arch(self.model_without_ddp)} for {r.epochs} epochs ({r.name} recipe, "
                f"{len(self.train_set)} images, batch {r.batch_size}, {self.steps_per_epoch} steps/epoch, "  # type: ignore[arg-type]
                f"{self.device}{f' x{self.world}' if self.world > 1 else ''}){resumed}{where}",
                flush=True,
            )
        status = "finished"
        with StopFlag() as stop:
            self.stop = stop
            try:
                for epoch in range(self.start_epoch, r.epochs):
                    start_batch = self.start_batch if epoch == self.start_epoch else 0
                    train_metrics = self._train_epoch(epoch, start_batch)
                    if train_metrics is None:  # interrupted mid-epoch, already saved
                        status = "interrupted"
                        break
                    self._end_epoch(epoch, train_metrics)
                    if any_rank(self.stop.requested, self.device):
                        status = "interrupted" if epoch + 1 < r.epochs else "finished"
                        break
            except BaseException as e:
                # run.json must not stay "running": say how the run ended, whatever ended it.
                if isinstance(e, TrainingDiverged):
                    self._write_run_json("diverged", str(e), final=True)
                elif isinstance(e, KeyboardInterrupt):
                    self._write_run_json("interrupted", "aborted by a second interrupt before it could save; "
                                         "last.pt holds the last saved state", final=True)  # fmt: skip
                else:
                    first = (str(e).strip().splitlines() or [type(e).__name__])[0]
                    self._write_run_json(f"failed: {first[:200]}", f"{type(e).__name__}: {e}", final=True)
                raise
            finally:
                if self.loggers is not None:
                    self.loggers.close()
        self.warnings = self._chance_warning()
        if self.is_main:
            for w in self.warnings:
                print(f"warning: {w}", flush=True)
        self._write_run_json(status, final=True)
        if self.is_main and status == "interrupted" and self.out_dir is not None:
            print(f"interrupted: saved {self.out_dir / 'last.pt'}; continue with --resume {self.out_dir}", flush=True)
        d = current_group()
        if d is not None:
            d.barrier()  # every rank leaves fit() together, after rank 0 has written the run's files
        self._load_best_weights()
        return FitResult(self.out_dir, status, len(self.history), self.best_metric, self.best_epoch, self.history,
                         self.best_metric_name, stop.signum if status == "interrupted" else None,
                         self.warnings)  # fmt: skip

    def _train_epoch(self, epoch: int, start_batch: int) -> dict[str, float] | None:
        r = self.recipe
        model, optimizer = self.model, self.optimizer
        model.train()
        self._set_epoch(epoch, start_batch)
        part = self.partial if (start_batch and self.partial) else None
        keys = ("loss_sum", "correct", "count", "time")
        loss_sum, correct, count, elapsed = (float(part[k]) for k in keys) if part else (0.0, 0.0, 0.0, 0.0)
        self.partial = None
        t0 = time.perf_counter()
        autocast = torch.autocast(self.device.type, dtype=self.amp_dtype) if self.amp else nullcontext()
        d = current_group()
        bar = None
        if self.show_progress:
            from zoo.utils import progress

            bar = progress(total=self.steps_per_epoch, initial=start_batch, desc=f"epoch {epoch + 1}/{r.epochs}",
                           unit="batch")  # fmt: skip
        log_every = max(1, self.steps_per_epoch // 20)
        batch_idx = start_batch
        # Losses and correct counts stay on the device between log steps (see _sum_losses).
        window: list[tuple[int, torch.Tensor, int]] = []
        correct_t = torch.zeros((), device=self.device)
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
                if not finite:
                    raise TrainingDiverged(self._divergence_message(epoch, batch_idx, float(loss_value)))
            else:
                stop_now = False  # a non-finite loss is caught at the next log step, before anything is saved
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
            window.append((batch_idx, loss_value, n))
            count += n
            if self.mixup is None:
                correct_t += (logits.detach().argmax(1) == hard_targets).sum()
            batch_idx += 1
            if bar is not None:
                bar.update(1)
            if batch_idx % log_every == 0:
                loss_sum += self._sum_losses(window, epoch)
                lr = optimizer.param_groups[0]["lr"]
                if bar is not None:
                    spent = elapsed + time.perf_counter() - t0
                    bar.set_postfix(loss=f"{loss_sum / count:.4f}", lr=f"{lr:.2e}",
                                    img_s=f"{count * self.world / max(spent, 1e-9):.0f}")  # fmt: skip
                if self.loggers is not None:
                    self.loggers.log_step(self.global_step, {"loss": float(loss_value), "lr": lr})
            self.signal_hook.after_step(self.global_step)
            if (self.stop.requested or stop_now) and batch_idx < self.steps_per_epoch:
                if bar is not None:
                    bar.close()
                loss_sum += self._sum_losses(window, epoch)
                partial = {"loss_sum": loss_sum, "correct": correct + float(correct_t), "count": count,
                           "time": elapsed + time.perf_counter() - t0}  # fmt: skip
                self.stop.requested = True
                self._save_checkpoint(epoch, batch_idx, partial)
                return None
        if bar is not None:
            bar.close()
        loss_sum += self._sum_losses(window, epoch)
        sums = torch.tensor([loss_sum, correct + float(correct_t), count], dtype=torch.float64, device=self.device)
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
