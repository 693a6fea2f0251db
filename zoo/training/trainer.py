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

import functools
import os
import time
import warnings
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from torch.utils.data import Dataset

from zoo.errors import RecipeError, RunError, TrainingDiverged
from zoo.training.checkpoint import (
    RunState,
    atomic_torch_save,
    check_resume,
    checkpoint_state,
    data_identity,
    find_resume,
    load_checkpoint,
    model_arch,
    model_config,
    rank_states,
    restore_checkpoint,
    resumed_recipe,
    run_identity,
    run_lock,
    seed_everything,
    write_run_json,
)  # fmt: skip
from zoo.training.components import amp_dtype, build_components, check_input, num_classes_of
from zoo.training.distributed import any_rank, current_group, rank_world
from zoo.training.recipes import Recipe, resolve_recipe
from zoo.training.reporting import (
    chance_warning,
    divergence_message,
    epoch_line,
    sample_predictions,
    save_best,
    sum_losses,
)
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


class Trainer:
    """One training run; :func:`fit` is its public face.

    The trainer holds the run's settings, its :class:`~zoo.training.components.Components` (built once) and its
    :class:`~zoo.training.checkpoint.RunState`; everything else is a plain function of those, in
    ``components`` (building), ``checkpoint`` (saving, resuming, the run's records) and ``reporting``.
    """

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
        self._data_identity: dict[str, Any] | None = None
        if self.resume_path is not None:
            self.checkpoint = load_checkpoint(self.resume_path)
            check_resume(self.checkpoint, self._identity(), self.recipe, self.resume_path.parent)
            saved = self.checkpoint.get("recipe")
            if saved:
                # The run continues under its own recipe (check_resume allowed only epochs, workers, eval batch).
                self.recipe = resumed_recipe(saved, self.recipe)
        elif self.out_dir is not None and (self.out_dir / "last.pt").exists():
            raise RunError(
                f"{self.out_dir} already holds a run (last.pt)",
                hint="pass --resume to continue it or choose another --output",
            )
        r = self.recipe
        self.amp_dtype = amp_dtype(self.device, r.amp)
        self.amp = self.amp_dtype is not None
        # channels_last: a large win for convolutions on CUDA and, measured here, for oneDNN on CPU too.
        self.channels_last = r.channels_last
        if r.batch_size % self.world:
            raise RecipeError(f"batch size {r.batch_size} does not split evenly over {self.world} processes")
        self.batch_size = r.batch_size // self.world
        self.best_metric_name = "val_acc1" if val_set is not None else "last_epoch"
        self.warnings: list[str] = []
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
        if self.out_dir is not None and self.is_main:
            remove_stale_temp_files(self.out_dir)  # a run killed mid-write left them; we hold the folder
        self.num_classes = num_classes_of(self.model, self.label_names)
        self.parts = build_components(
            self.model, self.train_set, r, device=self.device, rank=self.rank, world=self.world,
            batch_size=self.batch_size, num_classes=self.num_classes, deterministic=self.deterministic, amp=self.amp,
        )  # fmt: skip
        if self.checkpoint is not None:
            assert self.resume_path is not None
            self.state = restore_checkpoint(self.checkpoint, self.resume_path, self.parts, r, rank=self.rank,
                                            world=self.world, best_metric_name=self.best_metric_name)  # fmt: skip
        else:
            self.state = RunState(best_metric_name=self.best_metric_name)
            if self.world > 1:
                # Each rank its own augmentation, mixup and dropout draws (seed + rank, as timm's train script);
                # the model needs no common seed: DDP gives every rank rank 0's parameters.
                seed_everything(r.seed + self.rank)
            check_input(self.train_set, self.parts.model_without_ddp, self.device)
        self.loggers = None
        if self.out_dir is not None and self.is_main:
            from zoo.training.loggers import create_loggers

            self.out_dir.mkdir(parents=True, exist_ok=True)
            if self.checkpoint is None:
                # A new run's run.json first: a folder holding a run's files but no run.json of zoo's is not a run
                self._write_run_json("running")
            write_json(self._config(), self.out_dir / "config.json")
            done = len(self.state.history) if self.checkpoint is not None else None
            step = self.state.global_step if self.checkpoint is not None else None
            self.loggers = create_loggers(
                self.out_dir, self.logger_names, resume_epoch=done, resume_step=step,
                title=f"{model_arch(self.model)}", **self.logger_options,
            )  # fmt: skip
        if self.checkpoint is not None:  # a resumed run's: only once its files have been read back
            self._write_run_json("running")
        if self.is_main:
            where = f" -> {self.out_dir}" if self.out_dir else ""
            resumed = (
                f", resumed at epoch {self.state.start_epoch + 1} batch {self.state.start_batch}"
                if self.checkpoint
                else ""
            )
            print(
                f"training {model_arch(self.model)} for {r.epochs} epochs ({r.name} recipe, "
                f"{len(self.train_set)} images, batch {r.batch_size}, {self.parts.steps_per_epoch} steps/epoch, "  # type: ignore[arg-type]
                f"{self.device}{f' x{self.world}' if self.world > 1 else ''}){resumed}{where}",
                flush=True,
            )
        status = "finished"
        with StopFlag() as stop:
            self.stop = stop
            try:
                for epoch in range(self.state.start_epoch, r.epochs):
                    start_batch = self.state.start_batch if epoch == self.state.start_epoch else 0
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
        self.warnings = chance_warning(self.state.history, self.state.best_epoch, self.num_classes)
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
        st = self.state
        return FitResult(self.out_dir, status, len(st.history), st.best_metric, st.best_epoch, st.history,
                         self.best_metric_name, stop.signum if status == "interrupted" else None,
                         self.warnings)  # fmt: skip

    def _train_epoch(self, epoch: int, start_batch: int) -> dict[str, float] | None:
        r = self.recipe
        parts, state = self.parts, self.state
        model, optimizer = parts.model, parts.optimizer
        model.train()
        parts.set_epoch(epoch, start_batch, r.seed, self.rank, self.batch_size)
        part = state.partial if (start_batch and state.partial) else None
        keys = ("loss_sum", "correct", "count", "time")
        loss_sum, correct, count, elapsed = (float(part[k]) for k in keys) if part else (0.0, 0.0, 0.0, 0.0)
        state.partial = None
        t0 = time.perf_counter()
        autocast = torch.autocast(self.device.type, dtype=self.amp_dtype) if self.amp else nullcontext()
        d = current_group()
        bar = None
        if self.show_progress:
            from zoo.utils import progress

            bar = progress(total=parts.steps_per_epoch, initial=start_batch, desc=f"epoch {epoch + 1}/{r.epochs}",
                           unit="batch")  # fmt: skip
        log_every = max(1, parts.steps_per_epoch // 20)
        batch_idx = start_batch
        # Losses and correct counts stay on the device between log steps (see _sum_losses).
        window: list[tuple[int, torch.Tensor, int]] = []
        correct_t = torch.zeros((), device=self.device)
        for images, targets in parts.train_loader:
            images = images.to(self.device, non_blocking=True)
            targets = targets.to(self.device, non_blocking=True)
            if self.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            hard_targets = targets
            if parts.mixup is not None:
                images, targets = parts.mixup(images, targets)
            with autocast:
                logits = model(images)
                loss = parts.criterion(logits, targets)
            loss_value = loss.detach()
            if d is not None:
                # Every rank must see a divergence or a Ctrl-C at the same step, or the others would hang.
                check = torch.stack([loss_value.float(), torch.tensor(float(self.stop.requested), device=loss.device)])
                check[0] = 0.0 if torch.isfinite(check[0]) else 1.0
                d.all_reduce(check, op=d.ReduceOp.MAX)
                finite, stop_now = check[0].item() == 0.0, check[1].item() > 0
                if not finite:
                    raise TrainingDiverged(self._diverged(epoch, batch_idx, float(loss_value)))
            else:
                stop_now = False  # a non-finite loss is caught at the next log step, before anything is saved
            optimizer.zero_grad(set_to_none=True)
            if parts.scaler is not None:
                parts.scaler.scale(loss).backward()
                if r.grad_clip:
                    parts.scaler.unscale_(optimizer)
                    nn.utils.clip_grad_norm_(model.parameters(), r.grad_clip)
                parts.scaler.step(optimizer)
                parts.scaler.update()
            else:
                loss.backward()
                if r.grad_clip:
                    nn.utils.clip_grad_norm_(model.parameters(), r.grad_clip)
                optimizer.step()
            state.global_step += 1
            if parts.ema is not None:
                parts.ema.update(parts.model_without_ddp, step=state.global_step)
            if parts.scheduler is not None and r.sched_on_updates:
                parts.scheduler.step_update(num_updates=state.global_step)
            n = len(hard_targets)
            window.append((batch_idx, loss_value, n))
            count += n
            if parts.mixup is None:
                correct_t += (logits.detach().argmax(1) == hard_targets).sum()
            batch_idx += 1
            if bar is not None:
                bar.update(1)
            if batch_idx % log_every == 0:
                loss_sum += sum_losses(window, functools.partial(self._diverged, epoch))
                lr = optimizer.param_groups[0]["lr"]
                if bar is not None:
                    spent = elapsed + time.perf_counter() - t0
                    bar.set_postfix(loss=f"{loss_sum / count:.4f}", lr=f"{lr:.2e}",
                                    img_s=f"{count * self.world / max(spent, 1e-9):.0f}")  # fmt: skip
                if self.loggers is not None:
                    self.loggers.log_step(state.global_step, {"loss": float(loss_value), "lr": lr})
            self.signal_hook.after_step(state.global_step)
            if (self.stop.requested or stop_now) and batch_idx < parts.steps_per_epoch:
                if bar is not None:
                    bar.close()
                loss_sum += sum_losses(window, functools.partial(self._diverged, epoch))
                partial = {"loss_sum": loss_sum, "correct": correct + float(correct_t), "count": count,
                           "time": elapsed + time.perf_counter() - t0}  # fmt: skip
                self.stop.requested = True
                self._save_checkpoint(epoch, batch_idx, partial)
                return None
        if bar is not None:
            bar.close()
        loss_sum += sum_losses(window, functools.partial(self._diverged, epoch))
        sums = torch.tensor([loss_sum, correct + float(correct_t), count], dtype=torch.float64, device=self.device)
        if d is not None:
            d.all_reduce(sums)
            # Each rank's BatchNorm statistics saw only its own batches: average them so every rank (and
            # the checkpoint) holds the same model, as timm's train script does.
            from timm.utils import distribute_bn

            distribute_bn(parts.model_without_ddp, self.world, reduce=True)
            if parts.ema is not None:
                distribute_bn(parts.ema.module, self.world, reduce=True)
        loss_sum, correct, count = sums.tolist()
        return {
            "train_loss": loss_sum / max(count, 1),
            "train_acc1": None if parts.mixup is not None else 100.0 * correct / max(count, 1),
            "epoch_time": elapsed + time.perf_counter() - t0,
            "img_per_s": count / max(elapsed + time.perf_counter() - t0, 1e-9),
        }

    # -- the end of an epoch ------------------------------------------------------------------------------------

    def _end_epoch(self, epoch: int, train_metrics: dict[str, float]) -> None:
        from zoo.evaluation import evaluate

        r, parts, state = self.recipe, self.parts, self.state
        if parts.scheduler is not None and not r.sched_on_updates:
            parts.scheduler.step(epoch + 1)
        row: dict[str, Any] = {"epoch": epoch + 1, "lr": parts.optimizer.param_groups[0]["lr"], **train_metrics}
        module = parts.eval_module(r.eval_model)
        for split, dataset in (("val", self.val_set), ("test", self.test_set)):
            if dataset is not None:
                results = evaluate(
                    module, dataset, batch_size=r.eval_batch_size, workers=r.workers, device=self.device,
                    num_classes=self.num_classes, label_names=self.label_names or None, amp=self.amp,
                    channels_last=self.channels_last,
                )  # fmt: skip
                row.update({f"{split}_loss": results["loss"], f"{split}_acc1": results["acc1"],
                            f"{split}_acc5": results["acc5"]})  # fmt: skip
        row["time"] = time.time()
        state.history.append(row)
        if self.best_metric_name == "val_acc1":
            metric = row["val_acc1"]
            is_best = state.best_metric is None or metric > state.best_metric
        else:  # "last_epoch": every finished epoch replaces the one before
            metric, is_best = float(epoch + 1), True
        if is_best:
            state.best_metric, state.best_epoch = metric, epoch + 1
            # Kept for the end of fit(), which leaves the caller's model with these weights.
            state.best_state = {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}
            if self.is_main and self.out_dir is not None:
                top1 = metric if self.best_metric_name == "val_acc1" else None
                save_best(self.out_dir / "best.safetensors", module, self._config(), epoch, top1,
                          self.best_metric_name, row.get("test_acc1"))  # fmt: skip
        self._save_checkpoint(epoch + 1)  # every rank: the checkpoint holds each rank's RNG state
        if self.is_main:
            if self.out_dir is not None:
                self._write_run_json("running")
            if self.loggers is not None:
                self.loggers.log_epoch(epoch + 1, row, state.history)
                if self.loggers.wants_samples:
                    dataset = next(d for d in (self.val_set, self.test_set, self.train_set) if d is not None)
                    names = self.label_names or [str(i) for i in range(self.num_classes)]
                    shown, titles = sample_predictions(module, dataset, names, self.device, self.channels_last)
                    self.loggers.log_samples(epoch + 1, shown, titles)
            is_new_best = is_best and self.best_metric_name == "val_acc1"
            print(epoch_line(row, r.epochs, self.world, is_new_best), flush=True)

    def _load_best_weights(self) -> None:
        """Leave the caller's model with the weights that scored best_metric (kept in memory or best.safetensors)."""
        state = self.state.best_state
        best_file = self.out_dir / "best.safetensors" if self.out_dir is not None else None
        if state is None and self.state.best_epoch is not None and best_file is not None and best_file.is_file():
            from safetensors.torch import load_file

            state = load_file(best_file)  # the best epoch came before this resume
        if state is None:
            if self.state.best_epoch is not None:
                warnings.warn("fit(): the best epoch's weights are not available; the model keeps its last weights",
                              stacklevel=3)  # fmt: skip
            return
        self.parts.model_without_ddp.load_state_dict(state)

    def _diverged(self, epoch: int, batch: int, value: float) -> str:
        lr = self.parts.optimizer.param_groups[0]["lr"]
        return divergence_message(epoch, batch, value, lr, self.out_dir, len(self.state.history))

    # -- the run's records ----------------------------------------------------------------------------------------

    def _identity(self) -> dict[str, Any]:
        """What this run trains (checked on resume); its data hashed once."""
        return run_identity(self.model, self.model_args, self.run_info.get("dataset_kind"), self.label_names,
                            len(self.train_set), self._data())  # type: ignore[arg-type]  # fmt: skip

    def _data(self) -> dict[str, Any]:
        """The content of the run's training and held-out images, hashed once (:func:`data_identity`)."""
        if self._data_identity is None:
            self._data_identity = data_identity(self.train_set, self.val_set)
        return self._data_identity

    def _config(self) -> dict[str, Any]:
        return model_config(self.model, self.num_classes, self.label_names, self.train_set,
                            self.run_info.get("input_size"), self.model_args)  # fmt: skip

    def _save_checkpoint(self, epoch: int, batch: int = 0, partial: dict[str, float] | None = None) -> None:
        """Write last.pt (rank 0); every rank calls this, since the checkpoint gathers each rank's RNG states."""
        if self.out_dir is None:
            return
        ranks = rank_states(partial, self.parts.loader_generator, self.world)
        if self.is_main:
            state = checkpoint_state(self.parts, self.state, self.recipe, self._identity(), epoch, batch, partial,
                                     ranks)  # fmt: skip
            atomic_torch_save(state, self.out_dir / "last.pt")

    def _write_run_json(self, status: str, error: str | None = None, final: bool = False) -> None:
        if self.out_dir is None or not self.is_main:
            return
        st = self.state
        record = {
            **self.run_info,
            "status": status,
            "error": error,
            "architecture": model_arch(self.model),
            "model_args": self.model_args,
            "label_names": self.label_names,
            "data_identity": self._data(),
            "recipe": self.recipe.to_dict(),
            "device": str(self.device),
            "precision": f"{str(self.amp_dtype).removeprefix('torch.')} autocast" if self.amp else "float32",
            "world_size": self.world,
            "deterministic": self.deterministic,
            "epochs_done": len(st.history),
            "best_metric": st.best_metric,
            "best_metric_name": self.best_metric_name,
            "best_epoch": st.best_epoch,
            "schedule_changes": st.schedule_changes,
            "warnings": self.warnings,
            "last": st.history[-1] if st.history else None,
            "torch": torch.__version__,
            "updated": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        write_run_json(self.out_dir, record, final)
