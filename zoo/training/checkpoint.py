"""Checkpoints: everything a run needs to resume exactly (``last.pt``, a typed :class:`Checkpoint` checked before
any of it is used), and the run folder's lock."""

from __future__ import annotations

import contextlib
import random
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from zoo.errors import RunError
from zoo.runs import LOCK_NAME, is_run_folder
from zoo.training.distributed import current_group, rank_world
from zoo.training.recipes import Recipe
from zoo.utils import shorten
from zoo.utils.checks import Invalid, int_in, number_in, one_of, record, text
from zoo.utils.files import atomic_path, check_output_folder

CHECKPOINT_VERSION = 1
_DAMAGED_HINT = "start a new run in another --output (best.safetensors in that folder still holds its kept weights)"


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
    """torch.save through a temporary file renamed over ``path``; a failed write is the OSError naming ``path``."""
    with atomic_path(path) as tmp:
        try:
            with open(tmp, "wb") as f:
                torch.save(obj, f)
        except RuntimeError as e:  # torch's "unexpected pos" hides a full disk
            cause = e.__context__ or e.__cause__
            if isinstance(cause, OSError):
                raise OSError(cause.errno, cause.strerror or str(cause), str(path)) from None
            raise


def _of(name: str, value: Any, kind: type | tuple[type, ...]) -> None:
    if not isinstance(value, kind):
        raise Invalid(name, value, f"must be a {kind.__name__ if isinstance(kind, type) else kind[0].__name__}")


@dataclass
class RunState:
    """Where a run stands: what its checkpoint holds besides the weights and the training parts' states."""

    best_metric_name: str  # "val_acc1" (held-out top-1 chooses the kept epoch) or "last_epoch"
    global_step: int = 0
    epoch: int = 0  # the epoch to run next (or the one in progress when batch > 0)
    batch: int = 0  # batches of that epoch already trained
    best_metric: float | None = None
    best_epoch: int | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    partial: dict[str, float] | None = None  # the sums of an epoch stopped mid-way (each rank's are in "ranks")
    schedule_changes: list[dict[str, Any]] = field(default_factory=list)


@dataclass(kw_only=True)
class Checkpoint(RunState):
    """What ``last.pt`` holds, checked field by field before a resume uses any of it."""

    version: int
    arch: str
    model: dict[str, Any]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any] | None
    scaler: dict[str, Any] | None
    ema: dict[str, Any] | None
    eval_weights: str  # "ema" or "model": the weights the run evaluates and keeps
    ranks: list[dict[str, Any]]  # each rank's RNG states and partial sums: its stream resumes where it stopped
    recipe: dict[str, Any]
    trains: dict[str, Any]  # what the run trains (model, dataset, classes, data): a resume must not change it

    def __post_init__(self) -> None:
        one_of("version", self.version, (CHECKPOINT_VERSION,))
        text("arch", self.arch, 200)
        for name in ("model", "optimizer", "recipe", "trains"):
            _of(name, getattr(self, name), dict)
        for name in ("scheduler", "scaler", "ema", "partial"):
            _of(name, getattr(self, name), (dict, type(None)))
        for name in ("ranks", "history", "schedule_changes"):
            _of(name, getattr(self, name), list)
        one_of("eval_weights", self.eval_weights, ("ema", "model"))
        if self.best_metric is not None:
            number_in("best_metric", self.best_metric)
        one_of("best_metric_name", self.best_metric_name, ("val_acc1", "last_epoch"))
        int_in("batch", self.batch, 0)
        int_in("global_step", self.global_step, 0)
        int_in("epoch", self.epoch, len(self.history), len(self.history))  # the epochs its history holds
        if self.best_epoch is not None:
            int_in("best_epoch", self.best_epoch, 1, len(self.history))


def load_checkpoint(path: Path) -> Checkpoint:
    """``last.pt`` read with ``torch.load(weights_only=True)`` (never code) and checked; else a RunError naming it."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # UnpicklingError, RuntimeError, EOFError ...: not a checkpoint zoo wrote
        raise RunError(
            f"{path} could not be read with torch.load(weights_only=True), which reads tensors only, never code: "
            f"{shorten(' '.join(str(e).split()), 200)}",
            hint="it is not a checkpoint zoo train wrote (or it is damaged); start a new run in another --output",
        ) from None
    return record(Checkpoint, data, str(path), RunError, _DAMAGED_HINT)


@contextlib.contextmanager
def run_lock(out_dir: Path) -> Iterator[None]:
    """Hold the run folder ``out_dir`` (new, empty or a run) for this process: a second writer is a RunError."""
    from filelock import FileLock, Timeout

    check_output_folder(out_dir, "the run folder", "training run", is_run_folder)
    out_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(out_dir / LOCK_NAME), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise RunError(
            f"{out_dir} is in use: another process is training into it (it holds {out_dir / LOCK_NAME})",
            hint="wait for that run to end (then --resume it), or give another --output",
        ) from None
    try:
        yield
    finally:
        lock.release()


def check_resume(saved: dict[str, Any], now: dict[str, Any], folder: Path) -> None:
    """Refuse to continue the run in ``folder`` (``saved``) with another model, dataset, class set or data (``now``)."""
    labels = {
        "arch": "trains {}",
        "model_args": "builds the model with {}",
        "dataset": "trains on {}",
        "classes": "was trained on classes {}",
        "train_images": "has {} training images",
    }
    problems = [
        f"the run in {folder} {labels[key].format(saved[key])}, not {now[key]}"
        for key in labels
        if saved.get(key) not in (None, [], {}) and now[key] not in (None, [], {}) and saved[key] != now[key]
    ]
    for key, part in (("train_data", "training"), ("val_data", "held-out")):
        before, after = saved.get(key), now.get(key)
        if not problems and before and after and before.get("sha256") != after.get("sha256"):
            problems.append(
                f"the run in {folder} used other {part} images: {before['images']} with SHA-256 "
                f"{before['sha256'][:12]}… of their {before['of']}, and these are {after['images']} with "
                f"{after['sha256'][:12]}… (another folder, an edited one, or another --train-subset/--val-subset)"
            )
    if problems:
        raise RunError(
            "; ".join(problems),
            hint=f"resume with the run's own model and data, or start a new run in another folder (to build on "
            f"these weights, fine-tune from {folder / 'best.safetensors'})",
        )


def rank_states(partial: dict[str, float] | None, loader_generator: torch.Generator | None, world: int) -> list:
    """Every rank's RNG states and partial-epoch sums, in rank order (a collective: every rank calls it)."""
    mine = {
        "rng": rng_state(),
        "loader_generator": loader_generator.get_state() if loader_generator else None,
        "partial": partial,
    }
    d = current_group()
    if d is None:
        return [mine]
    states: list[Any] = [None] * world
    d.all_gather_object(states, mine)
    return states


def restore_checkpoint(ckpt: Checkpoint, path: Path, parts: Any, recipe: Recipe) -> RunState:
    """Load ``ckpt`` (read from ``path``) into ``parts`` and this process's RNGs; the run's state to go on from.
    Anything that does not fit is a RunError naming the file."""
    rank, world = rank_world()
    try:
        parts.model_without_ddp.load_state_dict(ckpt.model)
        parts.optimizer.load_state_dict(ckpt.optimizer)
        state = RunState(**{f.name: getattr(ckpt, f.name) for f in fields(RunState)})
        if parts.scheduler is not None and ckpt.scheduler is not None:
            planned = ckpt.recipe.get("epochs", recipe.epochs)
            if planned == recipe.epochs:
                parts.scheduler.load_state_dict(ckpt.scheduler)
            else:
                _reschedule(parts, state, recipe, planned, warn=rank == 0)
        if parts.scaler is not None and ckpt.scaler is not None:
            parts.scaler.load_state_dict(ckpt.scaler)
        if parts.ema is not None and ckpt.ema is not None:
            parts.ema.module.load_state_dict(ckpt.ema)
        if len(ckpt.ranks) != world:
            if rank == 0:
                warnings.warn(
                    f"{path} was written by {len(ckpt.ranks)} process(es) and this run has {world}: the data order "
                    "and each process's random streams restart, so the resumed run is not identical to an "
                    "uninterrupted one",
                    stacklevel=4,
                )
            seed_everything(recipe.seed + state.global_step + rank)
            return state
        mine = ckpt.ranks[rank]
        state.partial = mine.get("partial", state.partial)
        set_rng_state(mine["rng"])
        if mine.get("loader_generator") is not None and parts.loader_generator is not None:
            parts.loader_generator.set_state(mine["loader_generator"])
        return state
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, RuntimeError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise RunError(
            f"{path} does not fit this run ({type(e).__name__}: {first[:300]})",
            hint="it is damaged or from another run: start a new run in another --output",
        ) from None


def _reschedule(parts: Any, state: RunState, recipe: Recipe, planned: int, warn: bool) -> None:
    """Continue a run planned for ``planned`` epochs under the schedule built for ``recipe.epochs``, placed at the
    current step, and record the change (timm's ``load_state_dict`` would train the extra epochs at ``min_lr``)."""
    before = parts.optimizer.param_groups[0]["lr"]
    if recipe.sched_on_updates:
        parts.scheduler.step_update(num_updates=state.global_step)
    else:
        parts.scheduler.step(state.epoch)
    after = parts.optimizer.param_groups[0]["lr"]
    change = {"at_epoch": state.epoch, "at_step": state.global_step, "from_epochs": planned, "to_epochs": recipe.epochs}
    state.schedule_changes.append({**change, "lr_before": before, "lr_after": after})
    if warn:
        warnings.warn(
            f"the run was planned for {planned} epochs and now runs {recipe.epochs}: its {recipe.sched} schedule is "
            f"recomputed for {recipe.epochs} epochs from step {state.global_step} (lr {before:.3g} -> {after:.3g})",
            stacklevel=5,
        )
