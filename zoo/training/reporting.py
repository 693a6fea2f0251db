"""What a run reports after each epoch: validation and test, the kept weights, logs, sample predictions, the epoch line.

Weights are kept by the validation set alone (held out of the training data) or, without one, by being the
last epoch's: the test set is measured for the report and never chooses, so its number stays honest.
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import torch

from zoo.data.tensor import channel_stats
from zoo.training.checkpoint import rng_state, set_rng_state

__all__ = ["ReportingMixin", "denormalize"]


def denormalize(images: torch.Tensor, mean: Any, std: Any) -> torch.Tensor:
    """Undo normalisation for display (min-max scaling when the statistics are unknown)."""
    if mean is None or std is None:
        lo = images.amin(dim=(1, 2, 3), keepdim=True)
        hi = images.amax(dim=(1, 2, 3), keepdim=True)
        return (images - lo) / (hi - lo).clamp(min=1e-6)
    return (images * channel_stats(std, images.device) + channel_stats(mean, images.device)).clamp(0, 1)


class ReportingMixin:
    """End-of-epoch work of the trainer: evaluate, keep the best weights, checkpoint, log and print."""

    def _sum_losses(self, window: list[tuple[int, torch.Tensor, int]], epoch: int) -> float:
        """The sample-weighted loss sum of the steps in ``window`` (batch index, loss, batch size), emptied.

        One host synchronisation for many steps: reading each step's loss at once would stall a GPU every step.
        Raises :class:`TrainingDiverged` naming the first step whose loss was NaN or infinite.
        """
        from zoo.errors import TrainingDiverged

        if not window:
            return 0.0
        losses = torch.stack([loss.float() for _, loss, _ in window]).cpu()
        bad = (~torch.isfinite(losses)).nonzero()
        if len(bad):
            k = int(bad[0])
            raise TrainingDiverged(self._divergence_message(epoch, window[k][0], float(losses[k])))
        sizes = torch.tensor([n for _, _, n in window], dtype=torch.float64)
        window.clear()
        return float((losses.double() * sizes).sum())

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

    def _chance_warning(self) -> list[str]:
        """A kept epoch that scores about what guessing would (held-out images first, else the test set)."""
        if self.best_epoch is None or not self.history:
            return []
        row = self.history[self.best_epoch - 1]
        split = "val" if row.get("val_acc1") is not None else "test" if row.get("test_acc1") is not None else None
        n = self._num_classes()
        if split is None or n < 2:
            return []
        chance = 100.0 / n
        if row[f"{split}_acc1"] > 1.25 * chance:
            return []
        where = "the held-out images" if split == "val" else "the test images"
        return [
            f"the kept weights (epoch {self.best_epoch}) score {row[f'{split}_acc1']:.2f} % top-1 on {where}, about "
            f"chance for {n} classes ({chance:.1f} %): the model has not learned. Train for more epochs, with a "
            "lower --lr, or on more images"
        ]

    def _end_epoch(self, epoch: int, train_metrics: dict[str, float]) -> None:
        from zoo.evaluation import evaluate

        r = self.recipe
        if self.scheduler is not None and not r.sched_on_updates:
            self.scheduler.step(epoch + 1)
        row: dict[str, Any] = {"epoch": epoch + 1, "lr": self.optimizer.param_groups[0]["lr"], **train_metrics}
        for split, dataset in (("val", self.val_set), ("test", self.test_set)):
            if dataset is not None:
                results = evaluate(
                    self._eval_module(), dataset, batch_size=r.eval_batch_size, workers=r.workers,
                    device=self.device, num_classes=self._num_classes(), label_names=self.label_names or None,
                    amp=self.amp, channels_last=self.channels_last,
                )  # fmt: skip
                row.update({f"{split}_loss": results["loss"], f"{split}_acc1": results["acc1"],
                            f"{split}_acc5": results["acc5"]})  # fmt: skip
        row["time"] = time.time()
        self.history.append(row)
        if self.best_metric_name == "val_acc1":
            metric = row["val_acc1"]
            is_best = self.best_metric is None or metric > self.best_metric
        else:  # "last_epoch": every finished epoch replaces the one before
            metric, is_best = float(epoch + 1), True
        if is_best:
            self.best_metric, self.best_epoch = metric, epoch + 1
            # Kept for the end of fit(), which leaves the caller's model with these weights.
            self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in self._eval_module().state_dict().items()}
            if self.is_main and self.out_dir is not None:
                self._save_best(epoch, metric, row.get("test_acc1"))
        self._save_checkpoint(epoch + 1)  # every rank: the checkpoint holds each rank's RNG state
        if self.is_main:
            if self.out_dir is not None:
                self._write_run_json("running")
            if self.loggers is not None:
                self.loggers.log_epoch(epoch + 1, row, self.history)
                if self.loggers.wants_samples:
                    self._log_samples(epoch + 1)
            print(self._epoch_line(row, is_best and self.best_metric_name == "val_acc1"), flush=True)

    def _load_best_weights(self) -> None:
        """Leave the caller's model with the weights that scored best_metric (kept in memory or best.safetensors)."""
        state = self.best_state
        best_file = self.out_dir / "best.safetensors" if self.out_dir is not None else None
        if state is None and self.best_epoch is not None and best_file is not None and best_file.is_file():
            from safetensors.torch import load_file

            state = load_file(best_file)  # the best epoch came before this resume
        if state is None:
            if self.best_epoch is not None:
                warnings.warn("fit(): the best epoch's weights are not available; the model keeps its last weights",
                              stacklevel=3)  # fmt: skip
            return
        self.model_without_ddp.load_state_dict(state)

    def _save_best(self, epoch: int, metric: float, test_acc1: float | None) -> None:
        from zoo.pretrained.files import WeightsMetadata, save_weights

        # With the config in its metadata, create_model(arch, checkpoint_path=...) rebuilds the model as
        # trained: classes, channels, stem, label names and normalisation. The metadata's metric is the
        # validation top-1 that chose the epoch, if one did; the test top-1 is recorded apart, for zoo publish
        # to reproduce.
        config = self._model_config()
        top1 = self.best_metric_name == "val_acc1"
        extra = {"zoo.selected_by": self.best_metric_name}
        if test_acc1 is not None:
            extra["zoo.test_acc1"] = repr(test_acc1)
        meta = WeightsMetadata(
            architecture=config["architecture"], epoch=epoch + 1, metric=metric if top1 else None,
            model_args=self.model_args, pretrained_cfg=config["pretrained_cfg"], extra=extra,
        )  # fmt: skip
        save_weights(self._eval_module().state_dict(), self.out_dir / "best.safetensors", meta)

    def _log_samples(self, epoch: int, n: int = 16) -> None:
        dataset = next(d for d in (self.val_set, self.test_set, self.train_set) if d is not None)
        step = max(1, len(dataset) // n)  # type: ignore[arg-type]
        # Reading samples runs the dataset's transforms, which may draw random numbers: put the RNG states
        # back, so that a run resumed from this epoch's checkpoint (saved before) matches an uninterrupted one.
        saved = rng_state()
        try:
            items = [dataset[i] for i in range(0, min(len(dataset), step * n), step)][:n]  # type: ignore[arg-type]
        finally:
            set_rng_state(saved)
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
        shown = denormalize(images, getattr(dataset, "mean", None), getattr(dataset, "std", None))
        self.loggers.log_samples(epoch, shown, titles)

    def _epoch_line(self, row: dict[str, Any], is_best: bool) -> str:
        parts = [f"epoch {row['epoch']}/{self.recipe.epochs}", f"train loss {row['train_loss']:.4f}"]
        if row.get("train_acc1") is not None:
            parts.append(f"acc {row['train_acc1']:.2f}")
        if row.get("val_acc1") is not None:
            parts.append(f"val loss {row['val_loss']:.4f} top-1 {row['val_acc1']:.2f} top-5 {row['val_acc5']:.2f}")
        if row.get("test_acc1") is not None:
            parts.append(f"test top-1 {row['test_acc1']:.2f} top-5 {row['test_acc5']:.2f}")
        parts.append(f"lr {row['lr']:.2e}")
        parts.append(f"{row['epoch_time']:.1f}s ({row['img_per_s'] * self.world:.0f} img/s)")
        return "  ".join(parts) + ("  *" if is_best else "")
