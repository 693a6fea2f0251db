"""Training: :func:`fit` for any model and ``torch.utils.data.Dataset``; on CPU a run resumed after SIGKILL or Ctrl-C
ends exactly as an uninterrupted one (docs/training.md, "The run folder")."""

from __future__ import annotations

import dataclasses
import functools
import os
import time
import warnings
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
import torch.nn as nn
from safetensors.torch import load_file
from torch.utils.data import Dataset

from zoo.data import data_fingerprint
from zoo.errors import ArgumentValueError, RecipeError, RunError, TrainingDiverged
from zoo.evaluation import evaluate
from zoo.models.cfg import without_source
from zoo.pretrained.files import WeightsMetadata, save_weights
from zoo.runs import BEST, CONFIG_JSON, LAST, RunConfig, model_arch, resume_point, write_run
from zoo.training import checkpoint, reporting
from zoo.training.checkpoint import Checkpoint, RunState
from zoo.training.components import amp_dtype, build_components, check_input
from zoo.training.distributed import any_rank, current_group, rank_world
from zoo.training.loggers import RunLoggers
from zoo.training.recipes import Recipe, get_recipe, read_recipe, resume_recipe
from zoo.training.signals import SignalHook, StopFlag
from zoo.utils import progress as progress_bar
from zoo.utils.files import remove_stale_temp_files, write_json

_ABORTED = "aborted by a second interrupt before it could save; last.pt holds the last saved state"


@dataclass
class FitResult:
    """What :func:`fit` returns."""

    out_dir: Path | None
    status: str  # finished, interrupted
    epochs_done: int
    best_metric: float | None  # the value of best_metric_name at best_epoch
    best_epoch: int | None
    history: list[dict[str, Any]] = field(default_factory=list)
    # What chose the kept epoch: "val_acc1" (the best top-1 on the validation set, held out of the training
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
    """Train ``model`` on ``train_set``, keeping the epoch of best top-1 on ``val_set`` (the last without one) and
    reporting ``test_set``; ``out_dir`` is the run folder, ``resume`` one to continue (docs/training.md)."""
    arguments = dict(locals())  # the Trainer takes fit's own arguments
    with checkpoint.run_lock(Path(out_dir)) if out_dir is not None and rank_world()[0] == 0 else nullcontext():
        return Trainer(**arguments).run()


class Trainer:
    """One training run, :func:`fit`'s engine: the run's settings, its :class:`~zoo.training.components.Components`
    (built once) and its :class:`~zoo.training.checkpoint.RunState`; the rest are plain functions of those."""

    def __init__(self, **fit_args: Any) -> None:
        a = SimpleNamespace(**fit_args)
        self.rank, self.world = rank_world()
        self.is_main = self.rank == 0
        self.run_info = dict(a.run_info or {})
        recipe, kind = a.recipe, self.run_info.get("dataset_kind")
        self.recipe = recipe if isinstance(recipe, Recipe) else get_recipe(recipe or "fast", kind)
        local = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(local if a.device is None else a.device)
        self.deterministic = self.device.type == "cpu" if a.deterministic is None else a.deterministic
        self.out_dir = Path(a.out_dir) if a.out_dir is not None else None
        self.model, self.train_set, self.val_set, self.test_set = a.model, a.train_set, a.val_set, a.test_set
        self.label_names = [str(n) for n in a.label_names or getattr(a.train_set, "classes", None) or []]
        self.model_args = dict(a.model_args or {})
        self.logger_names, self.logger_options = tuple(a.loggers), a.logger_options or {}
        self.show_progress = a.progress and self.is_main
        self.resume_path = resume_point(a.resume) if a.resume else None
        self.checkpoint: Checkpoint | None = None
        if self.resume_path is not None:
            ckpt = self.checkpoint = checkpoint.load_checkpoint(self.resume_path)
            checkpoint.check_resume(ckpt.trains, self._identity(), self.resume_path.parent)
            saved = read_recipe(ckpt.recipe, str(self.resume_path), hint="start a new run in another --output")
            self.recipe = resume_recipe(saved, self.recipe)
        elif self.out_dir is not None and (self.out_dir / LAST).exists():
            raise RunError(
                f"{self.out_dir} already holds a run ({LAST})",
                hint="pass --resume to continue it or choose another --output",
            )
        r = self.recipe
        self.amp_dtype = amp_dtype(self.device, r.amp)
        self.amp = self.amp_dtype is not None
        if r.batch_size % self.world:
            raise RecipeError(f"batch size {r.batch_size} does not split evenly over {self.world} processes")
        self.batch_size = r.batch_size // self.world
        self.best_metric_name = "val_acc1" if a.val_set is not None else "last_epoch"
        self.warnings = reporting.selection_warning(a.val_set)  # and, at the end, a kept epoch about chance
        self.best_state: dict[str, torch.Tensor] | None = None  # the kept epoch's weights, for the end of fit()
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
        self.num_classes = int(getattr(self.model, "num_classes", None) or len(self.label_names))
        if not self.num_classes:
            raise ArgumentValueError("cannot tell the number of classes: give the model a num_classes or label_names")
        if self.device.type == "cuda" and not self.deterministic:
            torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick the fastest kernels
        self.parts = build_components(self.model, self.train_set, r, self.device, self.num_classes, self.amp)
        resumed = self.checkpoint is not None
        if resumed:
            self.state = checkpoint.restore_checkpoint(self.checkpoint, self.resume_path, self.parts, r)
            self.state.best_metric_name = self.best_metric_name
        else:
            self.state = RunState(best_metric_name=self.best_metric_name)
            if self.world > 1:
                # Each rank its own augmentation, mixup and dropout draws (seed + rank, as timm's train script);
                # the model needs no common seed: DDP gives every rank rank 0's parameters.
                checkpoint.seed_everything(r.seed + self.rank)
            check_input(self.train_set, self.parts.model_without_ddp, self.device)
        self.loggers = None
        if self.out_dir is not None and self.is_main:
            if not resumed:  # a new run's run.json first: a folder with a run's files but no run.json is no run
                self._write_run_json("running")
            write_json(dataclasses.asdict(self._config()), self.out_dir / CONFIG_JSON)
            self.loggers = RunLoggers(
                self.out_dir,
                self.logger_names,
                resume_epoch=len(self.state.history) if resumed else None,
                resume_step=self.state.global_step if resumed else None,
                title=model_arch(self.model),
                **self.logger_options,
            )
        if resumed:  # only once the run's files have been read back
            self._write_run_json("running")
        if self.is_main:
            at = f", resumed at epoch {self.state.epoch + 1} batch {self.state.batch}" if resumed else ""
            print(
                f"training {model_arch(self.model)} for {r.epochs} epochs ({r.name} recipe, "
                f"{len(self.train_set)} images, batch {r.batch_size}, {self.parts.steps_per_epoch} steps/epoch, "  # type: ignore[arg-type]
                f"{self.device}{f' x{self.world}' if self.world > 1 else ''}){at}"
                + (f" -> {self.out_dir}" if self.out_dir else ""),
                flush=True,
            )
            for w in self.warnings:
                print(f"warning: {w}", flush=True)
        status = "finished"
        with StopFlag() as self.stop:
            try:
                first_epoch, first_batch = self.state.epoch, self.state.batch
                for epoch in range(first_epoch, r.epochs):
                    start_batch = first_batch if epoch == first_epoch else 0
                    train_metrics = self._train_epoch(epoch, start_batch)
                    if train_metrics is None:  # interrupted mid-epoch, already saved
                        status = "interrupted"
                        break
                    self._end_epoch(epoch, train_metrics)
                    if any_rank(self.stop.requested, self.device):
                        status = "interrupted" if epoch + 1 < r.epochs else "finished"
                        break
            except BaseException as e:  # run.json must not stay "running": say how the run ended
                first = (str(e).strip().splitlines() or [type(e).__name__])[0]
                status, error = f"failed: {first[:200]}", f"{type(e).__name__}: {e}"
                if isinstance(e, TrainingDiverged):
                    status, error = "diverged", str(e)
                elif isinstance(e, KeyboardInterrupt):
                    status, error = "interrupted", _ABORTED
                self._write_run_json(status, error, final=True)
                raise
            finally:
                if self.loggers is not None:
                    self.loggers.close()
        found = reporting.chance_warning(self.state.history, self.state.best_epoch, self.num_classes)
        self.warnings += found
        if self.is_main:
            for w in found:
                print(f"warning: {w}", flush=True)
        self._write_run_json(status, final=True)
        if self.is_main and status == "interrupted" and self.out_dir is not None:
            print(f"interrupted: saved {self.out_dir / LAST}; continue with --resume {self.out_dir}", flush=True)
        d = current_group()
        if d is not None:
            d.barrier()  # every rank leaves fit() together, after rank 0 has written the run's files
        self._load_best_weights()
        st, by = self.state, self.stop.signum if status == "interrupted" else None
        epochs, name = len(st.history), self.best_metric_name
        return FitResult(
            self.out_dir, status, epochs, st.best_metric, st.best_epoch, st.history, name, by, self.warnings
        )

    def _train_epoch(self, epoch: int, start_batch: int) -> dict[str, float] | None:
        r, parts, state = self.recipe, self.parts, self.state
        model, optimizer, scaler = parts.model, parts.optimizer, parts.scaler
        model.train()
        parts.set_epoch(epoch, start_batch, r.seed, self.rank, self.batch_size)
        part = state.partial if (start_batch and state.partial) else None
        keys = ("loss_sum", "correct", "count", "time", "lr_sum", "steps")  # lr_sum: the rates the steps trained with
        loss_sum, correct, count, elapsed, lr_sum, steps = (float(part[k]) for k in keys) if part else (0.0,) * 6
        state.partial = None
        t0 = time.perf_counter()
        autocast = torch.autocast(self.device.type, dtype=self.amp_dtype) if self.amp else nullcontext()
        d = current_group()
        shown = {} if self.show_progress else {"disable": True}
        bar = progress_bar(
            total=parts.steps_per_epoch,
            initial=start_batch,
            desc=f"epoch {epoch + 1}/{r.epochs}",
            unit="batch",
            **shown,
        )
        log_every = max(1, parts.steps_per_epoch // 20)
        batch_idx = start_batch
        diverged = functools.partial(self._diverged, epoch)
        # Losses and correct counts stay on the device between log steps (see sum_losses).
        window: list[tuple[int, torch.Tensor, int]] = []
        correct_t = torch.zeros((), device=self.device)
        for images, targets in parts.train_loader:
            images = images.to(self.device, non_blocking=True)
            targets = targets.to(self.device, non_blocking=True)
            if r.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            hard_targets = targets
            if parts.mixup is not None:
                images, targets = parts.mixup(images, targets)
            with autocast:
                logits = model(images)
                loss = parts.criterion(logits, targets)
            loss_value = loss.detach()
            stop_now = False  # without a process group a non-finite loss is caught at the next log step
            if d is not None:
                # Every rank must see a divergence or a Ctrl-C at the same step, or the others would hang.
                check = torch.stack([loss_value.float(), torch.tensor(float(self.stop.requested), device=loss.device)])
                check[0] = 0.0 if torch.isfinite(check[0]) else 1.0
                d.all_reduce(check, op=d.ReduceOp.MAX)
                if check[0].item() != 0.0:
                    raise TrainingDiverged(diverged(batch_idx, float(loss_value)))
                stop_now = check[1].item() > 0
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if r.grad_clip:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), r.grad_clip)
            lr = optimizer.param_groups[0]["lr"]  # this step's rate, before a scheduler moves it
            lr_sum, steps = lr_sum + lr, steps + 1
            scaler.step(optimizer)
            scaler.update()
            state.global_step += 1
            if parts.ema is not None:
                parts.ema.update(parts.model_without_ddp, step=state.global_step)
            if parts.scheduler is not None and r.sched_on_updates:
                parts.scheduler.step_update(num_updates=state.global_step)
            window.append((batch_idx, loss_value, len(hard_targets)))
            count += len(hard_targets)
            if parts.mixup is None:
                correct_t += (logits.detach().argmax(1) == hard_targets).sum()
            batch_idx += 1
            bar.update(1)
            if batch_idx % log_every == 0:
                loss_sum += reporting.sum_losses(window, diverged)
                spent = elapsed + time.perf_counter() - t0
                speed = f"{count * self.world / max(spent, 1e-9):.0f}"
                bar.set_postfix(loss=f"{loss_sum / count:.4f}", lr=f"{lr:.2e}", img_s=speed)
                if self.loggers is not None:
                    self.loggers.log_step(state.global_step, {"loss": float(loss_value), "lr": lr})
            self.signal_hook.after_step(state.global_step)
            if (self.stop.requested or stop_now) and batch_idx < parts.steps_per_epoch:
                bar.close()
                loss_sum += reporting.sum_losses(window, diverged)
                sums = (loss_sum, correct + float(correct_t), count, elapsed + time.perf_counter() - t0, lr_sum, steps)
                partial = dict(zip(keys, sums, strict=True))
                self.stop.requested = True
                self._save_checkpoint(epoch, batch_idx, partial)
                return None
        bar.close()
        loss_sum += reporting.sum_losses(window, diverged)
        sums = torch.tensor([loss_sum, correct + float(correct_t), count], dtype=torch.float64, device=self.device)
        if d is not None:
            d.all_reduce(sums)
            # Each rank's BatchNorm statistics saw only its own batches: average them so every rank (and the
            # checkpoint) holds the same model, as timm's train script does.
            from timm.utils import distribute_bn

            distribute_bn(parts.model_without_ddp, self.world, reduce=True)
            if parts.ema is not None:
                distribute_bn(parts.ema.module, self.world, reduce=True)
        loss_sum, correct, count = sums.tolist()
        return {
            "lr": lr_sum / steps if steps else optimizer.param_groups[0]["lr"],  # the mean of the epoch's steps
            "train_loss": loss_sum / max(count, 1),
            "train_acc1": None if parts.mixup is not None else 100.0 * correct / max(count, 1),
            "train_count": int(count),
            "epoch_time": elapsed + time.perf_counter() - t0,
            "img_per_s": count / max(elapsed + time.perf_counter() - t0, 1e-9),
        }

    def _end_epoch(self, epoch: int, train_metrics: dict[str, float]) -> None:
        r, parts, state = self.recipe, self.parts, self.state
        if parts.scheduler is not None and not r.sched_on_updates:
            parts.scheduler.step(epoch + 1)
        row: dict[str, Any] = {"epoch": epoch + 1, **train_metrics}
        module = parts.eval_module(r.eval_model)
        for split, dataset in (("val", self.val_set), ("test", self.test_set)):
            if dataset is not None:
                results = evaluate(
                    module,
                    dataset,
                    batch_size=r.eval_batch_size,
                    workers=r.workers,
                    device=self.device,
                    num_classes=self.num_classes,
                    label_names=self.label_names or None,
                    amp=self.amp,
                    channels_last=r.channels_last,
                )
                row.update({f"{split}_{k}": results[k] for k in ("loss", "acc1", "acc5", "count", "chance")})
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
            self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}
            if self.is_main and self.out_dir is not None:
                self._save_best(module, epoch + 1, row)
        self._save_checkpoint(epoch + 1)  # every rank: the checkpoint holds each rank's RNG state
        if self.is_main:
            if self.out_dir is not None:
                self._write_run_json("running")
            if self.loggers is not None:
                self.loggers.log_epoch(epoch + 1, row, state.history)
                if self.loggers.live:
                    dataset = next(d for d in (self.val_set, self.test_set, self.train_set) if d is not None)
                    names = self.label_names or [str(i) for i in range(self.num_classes)]
                    shown, titles = reporting.sample_predictions(module, dataset, names, self.device, r.channels_last)
                    self.loggers.log_samples(epoch + 1, shown, titles)
            print(
                reporting.epoch_line(row, r.epochs, self.num_classes, is_best and self.best_metric_name == "val_acc1"),
                flush=True,
            )

    def _load_best_weights(self) -> None:
        """Leave the caller's model with the weights that scored best_metric (kept in memory or best.safetensors)."""
        state = self.best_state
        best_file = self.out_dir / BEST if self.out_dir is not None else None
        if state is None and self.state.best_epoch is not None and best_file is not None and best_file.is_file():
            state = load_file(best_file)  # the best epoch came before this resume
        if state is not None:
            self.parts.model_without_ddp.load_state_dict(state)
        elif self.state.best_epoch is not None:
            warnings.warn(
                "fit(): the best epoch's weights are not available; the model keeps its last weights", stacklevel=3
            )

    def _diverged(self, epoch: int, batch: int, value: float) -> str:
        """What to say when the loss of ``batch`` in ``epoch`` became ``value`` (NaN or infinite)."""
        lr, last = self.parts.optimizer.param_groups[0]["lr"], self.out_dir / LAST if self.out_dir else None
        kept = "no checkpoint was written yet"
        if last is not None and last.exists():
            kept = f"the last good checkpoint, {last} (after epoch {len(self.state.history)}), is kept"
        return (
            f"the training loss became {value} at epoch {epoch + 1}, batch {batch + 1} (lr {lr:.3g}); stopping. "
            f"{kept}. Lower the learning rate (--lr) or check the data for NaN/inf values."
        )

    @functools.cached_property
    def _data_identity(self) -> dict[str, Any]:
        """The content of the run's training and held-out images, hashed once (CIFAR's pixels take 0.25 s)."""
        return {"train_data": data_fingerprint(self.train_set), "val_data": data_fingerprint(self.val_set)}

    def _identity(self) -> dict[str, Any]:
        """What this run trains, checked on resume: the model, dataset, classes and data."""
        arch, kind, images = model_arch(self.model), self.run_info.get("dataset_kind"), len(self.train_set)  # type: ignore[arg-type]
        trains = {"arch": arch, "model_args": self.model_args, "dataset": kind, "classes": self.label_names}
        return {**trains, "train_images": images, **self._data_identity}

    def _config(self) -> RunConfig:
        """config.json: how to rebuild the model, with the preprocessing it was trained with."""
        cfg = without_source(getattr(self.model, "pretrained_cfg", None) or {})  # the run's weights are its own
        cfg["num_classes"] = self.num_classes
        if self.label_names:
            cfg["label_names"] = list(self.label_names)
        mean, std = getattr(self.train_set, "mean", None), getattr(self.train_set, "std", None)
        if mean is not None and std is not None:
            cfg["mean"], cfg["std"] = tuple(mean), tuple(std)
        if self.run_info.get("input_size"):
            cfg["input_size"] = tuple(self.run_info["input_size"])
        features = getattr(self.model, "num_features", None)
        return RunConfig(
            model_arch(self.model), self.model_args, self.num_classes, features, self.label_names or None, cfg
        )

    def _save_best(self, module: nn.Module, epoch: int, row: dict[str, Any]) -> None:
        """best.safetensors, with the run's config in its header (``create_model(arch, checkpoint_path=...)``
        rebuilds the model as trained), the held-out top-1 that chose it and, apart, its test top-1 for publish."""
        config, test = self._config(), row.get("test_acc1")
        extra = {"zoo.selected_by": self.best_metric_name}
        if test is not None:
            extra["zoo.test_acc1"] = repr(test)
        described = {"model_args": config.model_args, "pretrained_cfg": config.pretrained_cfg, "extra": extra}
        meta = WeightsMetadata(architecture=config.architecture, epoch=epoch, metric=row.get("val_acc1"), **described)
        save_weights(module.state_dict(), self.out_dir / BEST, meta)

    def _save_checkpoint(self, epoch: int, batch: int = 0, partial: dict[str, float] | None = None) -> None:
        """Write last.pt (rank 0); every rank calls this, since the checkpoint gathers each rank's RNG states."""
        if self.out_dir is None:
            return
        ranks = checkpoint.rank_states(partial, self.parts.loader_generator, self.world)
        if not self.is_main:
            return
        parts, run_state = self.parts, {**vars(self.state), "epoch": epoch, "batch": batch, "partial": partial}
        ckpt = Checkpoint(
            **run_state,
            version=checkpoint.CHECKPOINT_VERSION,
            arch=model_arch(parts.model_without_ddp),
            model=parts.model_without_ddp.state_dict(),
            optimizer=parts.optimizer.state_dict(),
            scheduler=parts.scheduler.state_dict() if parts.scheduler is not None else None,
            scaler=parts.scaler.state_dict(),
            ema=parts.ema.module.state_dict() if parts.ema is not None else None,
            eval_weights="ema" if parts.ema is not None and self.recipe.eval_model == "ema" else "model",
            ranks=ranks,
            recipe=self.recipe.to_dict(),
            trains=self._identity(),
        )
        checkpoint.atomic_torch_save(vars(ckpt), self.out_dir / LAST)

    def _write_run_json(self, status: str, error: str | None = None, final: bool = False) -> None:
        if self.out_dir is None or not self.is_main:
            return
        st = self.state
        write_run(
            self.out_dir,
            {
                **self.run_info,
                "status": status,
                "error": error,
                "architecture": model_arch(self.model),
                "model_args": self.model_args,
                "label_names": self.label_names,
                "data_identity": self._data_identity,
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
            },
            final,
        )
