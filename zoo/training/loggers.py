"""Seeing a run: metrics.csv and curves.png always, TensorBoard and Visdom when asked, behind :class:`RunLoggers`."""

from __future__ import annotations

import csv
import math
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from zoo.errors import ArgumentValueError, DependencyError, RunError
from zoo.utils import shorten
from zoo.utils.files import atomic_path

_SPLIT_METRICS = ("train_loss", "train_acc1", "val_loss", "val_acc1", "val_acc5", "test_loss", "test_acc1", "test_acc5")
_COUNTS = ("train_count", "val_count", "test_count")  # the images each accuracy rests on
# metrics.csv's columns: lr is the rate the epoch trained with, img_per_s counts every process's images.
METRIC_FIELDS = ["epoch", "lr", *_SPLIT_METRICS, *_COUNTS, "epoch_time", "img_per_s", "time"]


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The rows of a metrics.csv, with numbers parsed (empty cells become None); a file that is not one (not
    text, a row longer than the header, no ``epoch`` column, a metric that is not a number) is a RunError."""
    path = Path(path)
    if not path.is_file():
        return []

    def damaged(why: str) -> RunError:
        return RunError(
            f"{path} is not a metrics.csv of zoo's: {why}",
            hint="restore it, or delete it (a resume then starts a new one, without the earlier epochs)",
        )

    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            header = reader.fieldnames or []
    except (UnicodeDecodeError, csv.Error) as e:  # a binary file, NUL bytes, a field over csv's size limit
        raise damaged(shorten(str(e).splitlines()[0], 100)) from None
    if rows and "epoch" not in header:
        raise damaged(f"its header has no epoch column ({shorten(','.join(header), 60)})")
    out = []
    for n, row in enumerate(rows, start=1):
        if None in row:  # DictReader puts the cells past the header's under the key None, as a list
            raise damaged(f"row {n} has {len(header) + len(row[None])} cells, its header {len(header)}")
        parsed: dict[str, Any] = {}
        for k, v in row.items():
            try:
                parsed[k] = None if v in ("", None) else int(v) if k == "epoch" or k in _COUNTS else float(v)
            except ValueError:
                # Columns zoo writes hold numbers; a resume compares epochs and plots the metrics.
                if k in METRIC_FIELDS:
                    raise damaged(f"row {n}: its {k} {shorten(v, 60)!r} is not a number") from None
                parsed[k] = v
        out.append(parsed)
    return out


def _cell(v: Any) -> Any:
    # repr: full precision, so that resumed and uninterrupted runs compare exactly
    return "" if v is None else repr(v) if isinstance(v, float) else v


def plot_curves(history: Sequence[dict[str, Any]], path: str | os.PathLike, title: str = "") -> None:
    """Draw loss and top-1 accuracy per epoch into a PNG (written atomically)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax_loss, ax_acc = fig.subplots(1, 2)
    epochs = [r["epoch"] for r in history]
    for ax, suffix in ((ax_loss, "loss"), (ax_acc, "acc1")):
        for key in (f"train_{suffix}", f"val_{suffix}", f"test_{suffix}"):
            values = [math.nan if r.get(key) is None else float(r[key]) for r in history]
            if any(not math.isnan(v) for v in values):  # a run without a validation or test set has no line
                ax.plot(epochs, values, marker="o", label=key.split("_")[0] + (" top-1" if "acc" in key else ""))
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")


class TensorBoardLogger:
    """Scalars (loss, lr, accuracy) and a sample grid with ``torch.utils.tensorboard``; ``purge_step``, a resumed
    run's first new step, hides the earlier session's events from it on, so that steps trained again appear once."""

    def __init__(self, log_dir: str | os.PathLike, purge_step: int | None = None) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as e:
            raise DependencyError(
                f"--logger tensorboard needs tensorboard: {e}", hint="pip install tensorboard"
            ) from None
        self.writer = SummaryWriter(str(log_dir), purge_step=purge_step)

    def log_step(self, step: int, values: dict[str, float]) -> None:
        for k, v in values.items():
            self.writer.add_scalar(f"step/{k}", v, step)

    def log_epoch(self, epoch: int, metrics: dict[str, Any], history: list[dict[str, Any]]) -> None:
        for k in _SPLIT_METRICS:
            if metrics.get(k) is not None:
                self.writer.add_scalar(f"loss/{k[:-5]}" if k.endswith("_loss") else f"accuracy/{k}", metrics[k], epoch)
        if metrics.get("lr") is not None:
            self.writer.add_scalar("lr", metrics["lr"], epoch)
        self.writer.flush()

    def log_samples(self, epoch: int, images: torch.Tensor, titles: list[str]) -> None:
        from torchvision.utils import make_grid

        self.writer.add_image("samples", make_grid(images, nrow=8), epoch)
        self.writer.add_text("samples/predictions", " | ".join(titles), epoch)

    def close(self) -> None:
        self.writer.close()


class VisdomLogger:
    """The course's Lab10-3 live plots: loss per step, loss and accuracy per epoch, sample predictions; without a
    server (``python -m visdom.server``) training goes on and a warning says so."""

    def __init__(self, server: str = "http://localhost", port: int = 8097, env: str = "main", title: str = "") -> None:
        try:
            import visdom
        except ImportError as e:
            raise DependencyError(f"--logger visdom needs visdom: {e}", hint="pip install 'zoo[visdom]'") from None
        self.env, self.title, self._started = env, title, set()
        try:
            self.vis = visdom.Visdom(
                server=server, port=port, env=env, use_incoming_socket=False, raise_exceptions=True
            )
            self.ok = bool(self.vis.check_connection(timeout_seconds=5))
        except Exception:  # visdom raises several kinds when no server answers
            self.ok = False
        if not self.ok:
            warnings.warn(
                f"no Visdom server at {server}:{port}; start one with `python -m visdom.server`", stacklevel=2
            )

    def _send(self, method: str, *args: Any, **kwargs: Any) -> bool:
        """Call the server; one that went away stops the logging, never the training."""
        try:
            getattr(self.vis, method)(*args, **kwargs)
            return True
        except Exception as e:
            self.ok = False
            warnings.warn(f"Visdom logging stopped: {e}", stacklevel=3)
            return False

    def _line(self, key: str, x: float, ys: dict[str, float | None], title: str, ylabel: str, xlabel: str) -> None:
        opts = dict(title=f"{self.title} {title}".strip(), xlabel=xlabel, ylabel=ylabel, showlegend=True)
        for name, y in ys.items():
            # The first trace creates the window; later ones (and new trace names) are appended to it.
            if self.ok and y is not None and math.isfinite(y):
                point = {"X": torch.tensor([float(x)]), "Y": torch.tensor([float(y)]), "name": name, "opts": opts}
                update = "append" if key in self._started else None
                if self._send("line", win=f"{self.env}_{key}", update=update, **point):
                    self._started.add(key)

    def log_step(self, step: int, values: dict[str, float]) -> None:
        self._line("step_loss", step, {"train loss": values.get("loss")}, "loss per step", "loss", "step")

    def log_epoch(self, epoch: int, metrics: dict[str, Any], history: list[dict[str, Any]]) -> None:
        splits = ("train", "val", "test")
        self._line("loss", epoch, {k: metrics.get(f"{k}_loss") for k in splits}, "loss", "loss", "epoch")
        self._line("acc", epoch, {k: metrics.get(f"{k}_acc1") for k in splits}, "accuracy", "accuracy (%)", "epoch")

    def log_samples(self, epoch: int, images: torch.Tensor, titles: list[str]) -> None:
        opts = dict(title=f"{self.title} samples, epoch {epoch}".strip(), caption=" | ".join(titles))
        if self.ok and self._send("images", images, nrow=8, win=f"{self.env}_samples", opts=opts):
            rows = "".join(f"<li>{i}: {t}</li>" for i, t in enumerate(titles))
            html = f"<b>epoch {epoch}: prediction / truth</b><ol start=0>{rows}</ol>"
            self._send("text", html, win=f"{self.env}_predictions")

    def close(self) -> None:
        """Nothing to close: each call went to the server."""


class RunLoggers:
    """metrics.csv and curves.png, and the live loggers named (``tensorboard``, ``visdom``); a resumed run passes the
    epochs and steps its checkpoint holds, and what was logged after them is dropped."""

    def __init__(
        self,
        out_dir: str | os.PathLike,
        names: Sequence[str] = (),
        *,
        resume_epoch: int | None = None,
        resume_step: int | None = None,
        title: str = "",
        visdom_server: str = "http://localhost",
        visdom_port: int = 8097,
        visdom_env: str | None = None,
    ) -> None:
        out_dir = Path(out_dir)
        self.csv, self.curves, self.title = out_dir / "metrics.csv", out_dir / "curves.png", title
        if resume_epoch is None:  # a new run starts a new metrics.csv; a resumed one drops rows past its checkpoint
            self.csv.unlink(missing_ok=True)
        elif self.csv.is_file():
            keep = [r for r in read_metrics(self.csv) if r["epoch"] is not None and r["epoch"] <= resume_epoch]
            with atomic_path(self.csv) as tmp, open(tmp, "w", newline="") as f:
                writer = csv.DictWriter(f, METRIC_FIELDS, extrasaction="ignore")
                writer.writeheader()
                writer.writerows({k: _cell(v) for k, v in r.items()} for r in keep)
        self.live: list[Any] = []  # the loggers that also show steps and sample predictions (wanted when any)
        for name in names:
            if name == "tensorboard":
                purge = None if resume_step is None else resume_step + 1
                self.live.append(TensorBoardLogger(out_dir / "tensorboard", purge_step=purge))
            elif name == "visdom":
                env = visdom_env or "".join(c if c.isalnum() or c in "-_" else "_" for c in out_dir.name)
                self.live.append(VisdomLogger(visdom_server, visdom_port, env, title))
            elif name != "csv":
                raise ArgumentValueError(f"unknown logger {name!r}; choose from csv, tensorboard, visdom")

    def log_step(self, step: int, values: dict[str, float]) -> None:
        for lg in self.live:
            lg.log_step(step, values)

    def log_epoch(self, epoch: int, metrics: dict[str, Any], history: list[dict[str, Any]]) -> None:
        new = not self.csv.is_file()
        with open(self.csv, "a", newline="") as f:
            writer = csv.DictWriter(f, METRIC_FIELDS, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow({k: _cell(metrics.get(k)) for k in METRIC_FIELDS})
            f.flush()
            os.fsync(f.fileno())
        plot_curves(history, self.curves, self.title)
        for lg in self.live:
            lg.log_epoch(epoch, metrics, history)

    def log_samples(self, epoch: int, images: torch.Tensor, titles: list[str]) -> None:
        for lg in self.live:
            lg.log_samples(epoch, images, titles)

    def close(self) -> None:
        for lg in self.live:
            lg.close()
