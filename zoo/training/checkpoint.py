"""Checkpoints and run records: everything a run needs to resume exactly, written atomically.

A run folder holds ``last.pt`` (model, optimiser, scheduler, AMP scaler, EMA, RNG states, epoch, best metric,
and what the run trains: model, dataset, classes), ``config.json`` (how to rebuild the model) and ``run.json``
(dataset, recipe, command line, status). While a run writes to its folder it holds a lock on it
(:func:`run_lock`), so a second process cannot write into the same run.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from zoo.errors import RunError
from zoo.training.distributed import current_group
from zoo.training.recipes import Recipe
from zoo.utils.files import atomic_path, check_output_folder, json_default, parse_json, write_json

__all__ = [
    "CHECKPOINT_VERSION", "LOCK_NAME", "RESUME_MAY_CHANGE", "RunState", "atomic_torch_save", "check_resume",
    "checkpoint_state", "data_identity", "find_resume", "load_checkpoint", "model_arch", "model_config",
    "rank_states", "restore_checkpoint", "resumed_recipe", "rng_state", "run_identity", "run_lock",
    "seed_everything", "set_rng_state", "write_run_json",
]  # fmt: skip

LOCK_NAME = ".zoo-train.lock"
# Recipe fields a resumed run may change: they decide how long it runs and how fast, not what it computes.
RESUME_MAY_CHANGE = ("epochs", "workers", "eval_batch_size")
_DESCRIPTIONS = ("name", "description", "notes")

CHECKPOINT_VERSION = 1


def model_arch(model: nn.Module) -> str:
    """The registered architecture of a zoo model (its class name for any other model)."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    return cfg.get("architecture") or type(model).__name__


def find_resume(resume: str | os.PathLike) -> Path:
    """The ``last.pt`` to resume from, given a run folder or the file itself."""
    path = Path(resume)
    if path.is_dir():
        path = path / "last.pt"
    if not path.is_file():
        raise FileNotFoundError(f"nothing to resume: {path} does not exist")
    return path


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
    """torch.save to a temporary file in the same folder, fsync, then rename over ``path``.

    A failed write (a full disk) is the ``OSError`` it is, naming ``path``, not torch's "unexpected pos".
    """
    with atomic_path(path) as tmp:
        try:
            with open(tmp, "wb") as f:
                torch.save(obj, f)
        except RuntimeError as e:
            cause = e.__context__ or e.__cause__
            if isinstance(cause, OSError):
                raise OSError(cause.errno, cause.strerror or str(cause), str(path)) from None
            raise


_DAMAGED_HINT = "start a new run in another --output (best.safetensors in that folder still holds its kept weights)"


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A ``last.pt`` read with ``weights_only=True``; anything else (a pickle carrying code) is a RunError."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # UnpicklingError, RuntimeError, EOFError ...: not a checkpoint zoo wrote
        from zoo.pretrained.files import unpickling_problem

        raise RunError(
            f"{path} could not be read with torch.load(weights_only=True), which reads tensors only, never "
            f"code: {unpickling_problem(e)}",
            hint="it is not a checkpoint zoo train wrote (or it is damaged); start a new run in another --output",
        ) from None
    if not isinstance(ckpt, dict):
        raise RunError(f"{path} holds a {type(ckpt).__name__}, not a zoo train checkpoint", hint="start a new run")
    wrong = [f"{key} ({'missing' if key not in ckpt else type(ckpt[key]).__name__})"
             for key, types in _CHECKPOINT_FIELDS.items() if not isinstance(ckpt.get(key), types)]  # fmt: skip
    if wrong:
        raise RunError(
            f"{path} is damaged or not a zoo train checkpoint: {', '.join(wrong)} where a checkpoint has "
            + ", ".join(f"{k} ({'/'.join(t.__name__ for t in v)})" for k, v in _CHECKPOINT_FIELDS.items()),
            hint=_DAMAGED_HINT,
        )
    done = len(ckpt["history"])
    bad = [f"{key} {ckpt[key]}" for key in ("epoch", "batch", "global_step") if ckpt[key] < 0]
    if ckpt["epoch"] != done:
        bad.append(f"epoch {ckpt['epoch']} after the {done} epochs of its history")
    if ckpt["best_epoch"] is not None and not 1 <= ckpt["best_epoch"] <= done:
        bad.append(f"best_epoch {ckpt['best_epoch']} of {done} epochs")
    if bad:
        raise RunError(
            f"{path} is damaged: {', '.join(bad)} (its epoch is the number of epochs in its history, and no count "
            "is negative)",
            hint=_DAMAGED_HINT,
        )
    return ckpt


# What every last.pt holds, and of which types (None where a value may be absent): checked before a resume
# uses any of it, so that a damaged file is named rather than failing half-way with a KeyError.
_CHECKPOINT_FIELDS: dict[str, tuple[type, ...]] = {
    "version": (int,), "arch": (str,), "epoch": (int,), "batch": (int,), "global_step": (int,), "model": (dict,),
    "optimizer": (dict,), "scheduler": (dict, type(None)), "scaler": (dict, type(None)), "ema": (dict, type(None)),
    "ranks": (list, type(None)), "best_metric": (float, int, type(None)), "best_epoch": (int, type(None)),
    "history": (list,), "recipe": (dict, type(None)), "trains": (dict, type(None)),
    "partial": (dict, type(None)),
}  # fmt: skip


# A run writes its run.json before any other file; until then its folder holds at most its lock and the
# temporary file of that first write.
_RUN_TEMP_RE = re.compile(r"^\.run\.json\.\d+\.\d+\.(tmp|part)$")


def is_run_folder(folder: Path) -> bool:
    """Whether ``folder`` is a training run of zoo's: its ``run.json`` says so, or it was killed before writing it
    (nothing but the run's lock and a temporary run.json). Files named like a run's do not make one."""
    try:
        record = parse_json((folder / "run.json").read_text(encoding="utf-8"))
        if isinstance(record, dict) and "status" in record and "recipe" in record:
            return True
    except (OSError, ValueError, RecursionError):
        pass
    return all(n == LOCK_NAME or _RUN_TEMP_RE.match(n) for n in os.listdir(folder))


@contextlib.contextmanager
def run_lock(out_dir: Path | None) -> Iterator[None]:
    """Hold the run folder ``out_dir`` for this process: a second writer gets a RunError instead of a mixed run.

    The folder must be new, empty or a run (:func:`zoo.utils.files.check_output_folder`): a training never
    writes its files into, or clears temporary-looking files from, a folder of the user's.
    """
    if out_dir is None:
        yield
        return
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


@dataclass
class RunState:
    """Where a run stands: what the checkpoint saves besides the weights, and what a resume restores."""

    best_metric_name: str  # "val_acc1" (held-out top-1 chooses the kept epoch) or "last_epoch"
    global_step: int = 0
    start_epoch: int = 0  # the epoch to run next (or the one in progress when start_batch > 0)
    start_batch: int = 0
    best_metric: float | None = None
    best_epoch: int | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    partial: dict[str, float] | None = None  # the sums of an epoch interrupted mid-way
    schedule_changes: list[dict[str, Any]] = field(default_factory=list)
    best_state: dict[str, torch.Tensor] | None = None  # the kept epoch's weights, in memory, for the end of fit()


def resumed_recipe(saved: dict[str, Any], given: Recipe, changed: Iterable[str] = RESUME_MAY_CHANGE) -> Recipe:
    """The recipe a resumed run continues under: the run's own, with the fields in ``changed`` (at most those
    a resume may change) taken from ``given``. The one place where resume settings meet the caller's."""
    return Recipe().replace(**{**saved, **{k: getattr(given, k) for k in changed if k in RESUME_MAY_CHANGE}})


def data_identity(train_set: Any, val_set: Any) -> dict[str, Any]:
    """The content of a run's training and held-out images (hashed once: CIFAR's pixels take a quarter second)."""
    from zoo.data import data_fingerprint

    return {"train_data": data_fingerprint(train_set), "val_data": data_fingerprint(val_set)}


def run_identity(
    model: nn.Module, model_args: dict[str, Any], dataset_kind: str | None, label_names: list[str], train_images: int,
    data: dict[str, Any],
) -> dict[str, Any]:  # fmt: skip
    """What a run trains, checked on resume: the model, dataset, classes and its data's :func:`data_identity`."""
    return {"arch": model_arch(model), "model_args": dict(model_args), "dataset": dataset_kind,
            "classes": list(label_names), "train_images": train_images, **data}  # fmt: skip


def _older_identity(ckpt: dict[str, Any], folder: Path) -> dict[str, Any]:
    """What a checkpoint without ``trains`` (from before it was recorded, or damaged) trains, from itself and the
    run's run.json, whose data identity is compared too."""
    try:
        run = parse_json((folder / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        run = {}
    run = run if isinstance(run, dict) else {}
    data = run.get("data_identity") if isinstance(run.get("data_identity"), dict) else {}
    return {"arch": ckpt.get("arch"), "model_args": run.get("model_args"), "dataset": run.get("dataset_kind"),
            "classes": run.get("label_names"), "train_images": run.get("train_images"),
            "train_data": data.get("train_data"), "val_data": data.get("val_data")}  # fmt: skip


def check_resume(ckpt: dict[str, Any], now: dict[str, Any], recipe: Recipe, folder: Path) -> None:
    """Refuse to continue the run in ``ckpt`` (from ``folder``) with another model, dataset, class set or
    recipe than ``now`` (:func:`run_identity`) and ``recipe`` say."""
    saved = ckpt.get("trains") or _older_identity(ckpt, folder)
    labels = {"arch": "trains {}", "model_args": "builds the model with {}", "dataset": "trains on {}",
              "classes": "was trained on classes {}", "train_images": "has {} training images"}  # fmt: skip
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
    before_recipe, given = ckpt.get("recipe") or {}, recipe.to_dict()
    fixed = [k for k in before_recipe if k in given and k not in RESUME_MAY_CHANGE + _DESCRIPTIONS]
    changed = [f"{k}={given[k]!r} (the run's: {before_recipe[k]!r})" for k in fixed if given[k] != before_recipe[k]]
    if changed:
        problems.append(f"a resumed run keeps its recipe, but {', '.join(changed)} differ")
    if problems:
        raise RunError(
            "; ".join(problems),
            hint=f"resume with the run's own model, data and settings, or start a new run in another folder "
            f"(to build on these weights, fine-tune from {folder / 'best.safetensors'})",
        )


def rank_states(partial: dict[str, float] | None, loader_generator: torch.Generator | None, world: int) -> list:
    """Every rank's RNG states and partial-epoch sums, in rank order (a collective: every rank calls it)."""
    mine = {"rng": rng_state(), "loader_generator": loader_generator.get_state() if loader_generator else None,
            "partial": partial}  # fmt: skip
    d = current_group()
    if d is None:
        return [mine]
    states: list[Any] = [None] * world
    d.all_gather_object(states, mine)
    return states


def checkpoint_state(
    parts: Any, state: RunState, recipe: Recipe, trains: dict[str, Any], epoch: int, batch: int,
    partial: dict[str, float] | None, ranks: list[dict],
) -> dict[str, Any]:  # fmt: skip
    """The ``last.pt`` of a run: ``parts`` (its :class:`~zoo.training.components.Components`) and ``state``."""
    return {
        "version": CHECKPOINT_VERSION,
        "arch": model_arch(parts.model_without_ddp),
        "epoch": epoch,  # the epoch to run next (or the one in progress when batch > 0)
        "batch": batch,  # batches of that epoch already trained
        "global_step": state.global_step,
        "model": parts.model_without_ddp.state_dict(),
        "optimizer": parts.optimizer.state_dict(),
        "scheduler": parts.scheduler.state_dict() if parts.scheduler is not None else None,
        "scaler": parts.scaler.state_dict() if parts.scaler is not None else None,
        "ema": parts.ema.module.state_dict() if parts.ema is not None else None,
        "eval_weights": "ema" if parts.ema is not None and recipe.eval_model == "ema" else "model",
        "ranks": ranks,  # each rank's RNG states: its augmentation stream resumes where it stopped
        "best_metric": state.best_metric,
        "best_metric_name": state.best_metric_name,
        "best_epoch": state.best_epoch,
        "schedule_changes": state.schedule_changes,
        "partial": partial,  # rank 0's; each rank's own is in "ranks"
        "history": state.history,
        "recipe": recipe.to_dict(),
        "trains": trains,  # what the run trains: a resume must not change it
    }


def restore_checkpoint(
    ckpt: dict[str, Any], path: Path, parts: Any, recipe: Recipe, *, rank: int, world: int, best_metric_name: str,
) -> RunState:  # fmt: skip
    """Load ``ckpt`` (read from ``path``) into ``parts`` and this process's RNGs; the run's state to go on from
    (kept by ``best_metric_name``). Anything that does not fit is a RunError naming the file."""
    try:
        return _restore(ckpt, path, parts, recipe, rank, world, best_metric_name)
    except RunError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, RuntimeError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise RunError(
            f"{path} does not fit this run ({type(e).__name__}: {first[:300]})",
            hint="it is damaged or from another run: start a new run in another --output",
        ) from None


def _restore(ckpt: dict[str, Any], path: Path, parts: Any, recipe: Recipe, rank: int, world: int,
             best_metric_name: str) -> RunState:  # fmt: skip
    if ckpt.get("version") != CHECKPOINT_VERSION:
        raise RunError(
            f"{path}: unsupported checkpoint version {ckpt.get('version')} (this zoo writes {CHECKPOINT_VERSION})",
            hint="resume it with the zoo version that wrote it",
        )
    arch = model_arch(parts.model_without_ddp)
    if ckpt.get("arch") != arch:
        raise RunError(f"{path} is a checkpoint of {ckpt.get('arch')}, not {arch}",
                       hint="resume with the model the run trains")  # fmt: skip
    parts.model_without_ddp.load_state_dict(ckpt["model"])
    parts.optimizer.load_state_dict(ckpt["optimizer"])
    state = RunState(
        best_metric_name=best_metric_name, global_step=ckpt["global_step"],
        start_epoch=ckpt["epoch"], start_batch=ckpt["batch"], best_metric=ckpt["best_metric"],
        best_epoch=ckpt["best_epoch"], history=list(ckpt.get("history") or []), partial=ckpt.get("partial"),
        schedule_changes=list(ckpt.get("schedule_changes") or []),
    )  # fmt: skip
    if parts.scheduler is not None and ckpt.get("scheduler") is not None:
        planned = (ckpt.get("recipe") or {}).get("epochs", recipe.epochs)
        if planned == recipe.epochs:
            parts.scheduler.load_state_dict(ckpt["scheduler"])
        else:
            _reschedule(parts, state, recipe, planned, warn=rank == 0)
    if parts.scaler is not None and ckpt.get("scaler") is not None:
        parts.scaler.load_state_dict(ckpt["scaler"])
    if parts.ema is not None and ckpt.get("ema") is not None:
        parts.ema.module.load_state_dict(ckpt["ema"])
    if ckpt.get("best_metric_name") is None and best_metric_name == "last_epoch" and state.best_metric is not None:
        state.best_metric = -state.best_metric  # older checkpoints kept the negated training loss
    # Older checkpoints hold rank 0's states only.
    ranks = ckpt.get("ranks") or [{"rng": ckpt["rng"], "loader_generator": ckpt.get("loader_generator")}]
    if len(ranks) != world:
        if rank == 0:
            warnings.warn(
                f"{path} was written by {len(ranks)} process(es) and this run has {world}: the data order and "
                "each process's random streams restart, so the resumed run is not identical to an "
                "uninterrupted one", stacklevel=5,
            )  # fmt: skip
        seed_everything(recipe.seed + state.global_step + rank)
        return state
    mine = ranks[rank]
    state.partial = mine.get("partial", state.partial)
    set_rng_state(mine["rng"])
    if mine.get("loader_generator") is not None and parts.loader_generator is not None:
        parts.loader_generator.set_state(mine["loader_generator"])
    return state


def _reschedule(parts: Any, state: RunState, recipe: Recipe, planned: int, warn: bool) -> None:
    """Continue a run planned for ``planned`` epochs under a schedule for ``recipe.epochs``.

    timm's ``load_state_dict`` would bring back the old length (``t_initial``) and so train the extra
    epochs at ``min_lr``. The scheduler built for the new length is kept instead and placed at the
    current step; the change is recorded in run.json and the checkpoint.
    """
    r = recipe
    before = parts.optimizer.param_groups[0]["lr"]
    if r.sched_on_updates:
        parts.scheduler.step_update(num_updates=state.global_step)
    else:
        parts.scheduler.step(state.start_epoch)
    after = parts.optimizer.param_groups[0]["lr"]
    state.schedule_changes.append({"at_epoch": state.start_epoch, "at_step": state.global_step,
                                   "from_epochs": planned, "to_epochs": r.epochs, "lr_before": before,
                                   "lr_after": after})  # fmt: skip
    if warn:
        warnings.warn(
            f"the run was planned for {planned} epochs and now runs {r.epochs}: its {r.sched} schedule is "
            f"recomputed for {r.epochs} epochs from step {state.global_step} (lr {before:.3g} -> {after:.3g})",
            stacklevel=6,
        )


def model_config(
    model: nn.Module, num_classes: int, label_names: list[str], train_set: Any, input_size: Any,
    model_args: dict[str, Any],
) -> dict[str, Any]:  # fmt: skip
    """A run's ``config.json``: how to rebuild its model, with the preprocessing it was trained with."""
    from zoo.models.cfg import without_source

    cfg = without_source(getattr(model, "pretrained_cfg", None) or {})  # the run's weights are its own file's
    cfg["num_classes"] = num_classes
    if label_names:
        cfg["label_names"] = list(label_names)
    mean, std = getattr(train_set, "mean", None), getattr(train_set, "std", None)
    if mean is not None and std is not None:
        cfg["mean"], cfg["std"] = tuple(mean), tuple(std)
    if input_size:
        cfg["input_size"] = tuple(input_size)
    return {
        "architecture": model_arch(model),
        "model_args": model_args,
        "num_classes": num_classes,
        "num_features": getattr(model, "num_features", None),
        "label_names": cfg.get("label_names"),
        "pretrained_cfg": cfg,
        "weights": "best.safetensors",
    }


def write_run_json(out_dir: Path, record: dict[str, Any], final: bool = False) -> None:
    """Write run.json; a ``final`` record must land even on a full disk (then it overwrites in place)."""
    try:
        write_json(record, out_dir / "run.json")
    except OSError:
        if not final:
            raise
        # No room for a temporary file: overwrite run.json in place (its old blocks are reused).
        try:
            with open(out_dir / "run.json", "r+" if (out_dir / "run.json").exists() else "w") as f:
                f.truncate(0)
                f.write(json.dumps(record, indent=2, default=json_default) + "\n")
        except OSError as e:
            warnings.warn(f"could not record the run's end ({record.get('status')}) in {out_dir / 'run.json'}: {e}",
                          stacklevel=3)  # fmt: skip
