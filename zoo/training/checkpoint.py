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
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from zoo.errors import RunError
from zoo.training.distributed import current_group
from zoo.utils.files import atomic_path, check_output_folder, json_default, parse_json, write_json

__all__ = ["CHECKPOINT_VERSION", "CheckpointMixin", "LOCK_NAME", "RESUME_MAY_CHANGE", "atomic_torch_save",
           "find_resume", "load_checkpoint", "model_arch", "rng_state", "run_lock", "seed_everything",
           "set_rng_state"]  # fmt: skip

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
            hint="start a new run in another --output (best.safetensors in that folder still holds its kept weights)",
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


# What a run writes into its folder; a folder holding only these (or a run.json of zoo's) is a run.
RUN_FILES = frozenset({"config.json", "run.json", "metrics.csv", "curves.png", "last.pt", "best.safetensors",
                       "tensorboard", LOCK_NAME})  # fmt: skip
_RUN_TEMP_RE = re.compile(r"^\.(.+)\.\d+\.\d+\.(tmp|part)$")


def is_run_folder(folder: Path) -> bool:
    """Whether ``folder`` is a training run of zoo's: its ``run.json`` says so, or it holds only a run's files."""
    try:
        record = parse_json((folder / "run.json").read_text(encoding="utf-8"))
        if isinstance(record, dict) and "status" in record and "recipe" in record:
            return True
    except (OSError, ValueError, RecursionError):
        pass
    names = os.listdir(folder)
    return all(n in RUN_FILES or (_RUN_TEMP_RE.match(n) and _RUN_TEMP_RE.match(n)[1] in RUN_FILES) for n in names)


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


class CheckpointMixin:
    """The trainer's state as a checkpoint and as the run's ``config.json`` and ``run.json``."""

    def _eval_module(self) -> nn.Module:
        if self.ema is not None and self.recipe.eval_model == "ema":
            return self.ema.module
        return self.model_without_ddp

    def _rank_states(self, partial: dict[str, float] | None) -> list[dict[str, Any]]:
        """Every rank's RNG states and partial-epoch sums, in rank order (a collective: every rank calls it)."""
        mine = {
            "rng": rng_state(),
            "loader_generator": self.loader_generator.get_state() if not self.tensor_data else None,
            "partial": partial,
        }
        d = current_group()
        if d is None:
            return [mine]
        states: list[Any] = [None] * self.world
        d.all_gather_object(states, mine)
        return states

    def _state(self, epoch: int, batch: int, partial: dict[str, float] | None, ranks: list[dict]) -> dict[str, Any]:
        return {
            "version": CHECKPOINT_VERSION,
            "arch": model_arch(self.model_without_ddp),
            "epoch": epoch,  # the epoch to run next (or the one in progress when batch > 0)
            "batch": batch,  # batches of that epoch already trained
            "global_step": self.global_step,
            "model": self.model_without_ddp.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "ema": self.ema.module.state_dict() if self.ema is not None else None,
            "eval_weights": "ema" if self.ema is not None and self.recipe.eval_model == "ema" else "model",
            "ranks": ranks,  # each rank's RNG states: its augmentation stream resumes where it stopped
            "best_metric": self.best_metric,
            "best_metric_name": self.best_metric_name,
            "best_epoch": self.best_epoch,
            "schedule_changes": self.schedule_changes,
            "partial": partial,  # rank 0's; each rank's own is in "ranks"
            "history": self.history,
            "recipe": self.recipe.to_dict(),
            "trains": self._identity(),  # what the run trains: a resume must not change it
        }

    def _identity(self) -> dict[str, Any]:
        """The model, dataset, classes and the content of its splits of this run (checked on resume)."""
        if getattr(self, "_data_identity", None) is None:
            from zoo.data import data_fingerprint

            # Hashed once: the pixels of CIFAR's training set take a quarter of a second.
            self._data_identity = {"train_data": data_fingerprint(self.train_set),
                                   "val_data": data_fingerprint(self.val_set)}  # fmt: skip
        return {
            "arch": model_arch(getattr(self, "model_without_ddp", self.model)),  # before _build: the model itself
            "model_args": dict(self.model_args),
            "dataset": self.run_info.get("dataset_kind"),
            "classes": list(self.label_names),
            "train_images": len(self.train_set),  # type: ignore[arg-type]
            **self._data_identity,
        }

    def _check_resume(self, ckpt: dict[str, Any]) -> None:
        """Refuse to continue the run in ``ckpt`` with another model, dataset, class set or recipe."""
        folder = self.resume_path.parent
        saved = ckpt.get("trains") or self._older_identity(ckpt)
        now = self._identity()
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
        recipe = ckpt.get("recipe") or {}
        given = self.recipe.to_dict()
        changed = [f"{k}={given[k]!r} (the run's: {recipe[k]!r})" for k in recipe
                   if k in given and k not in RESUME_MAY_CHANGE + _DESCRIPTIONS and given[k] != recipe[k]]  # fmt: skip
        if changed:
            problems.append(f"a resumed run keeps its recipe, but {', '.join(changed)} differ")
        if problems:
            raise RunError(
                "; ".join(problems),
                hint=f"resume with the run's own model, data and settings, or start a new run in another folder "
                f"(to build on these weights, fine-tune from {folder / 'best.safetensors'})",
            )

    def _resume_settings(self, saved: dict[str, Any]) -> dict[str, Any]:
        """The saved recipe's fields, with those a resume may change taken from the caller's recipe."""
        return {**saved, **{k: getattr(self.recipe, k) for k in RESUME_MAY_CHANGE}}

    def _older_identity(self, ckpt: dict[str, Any]) -> dict[str, Any]:
        """What a checkpoint from before ``trains`` was recorded trains, from itself and the run's run.json."""
        try:
            run = parse_json((self.resume_path.parent / "run.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            run = {}
        return {"arch": ckpt.get("arch"), "model_args": run.get("model_args"), "dataset": run.get("dataset_kind"),
                "classes": run.get("label_names"), "train_images": run.get("train_images")}  # fmt: skip

    def _load_state(self, ckpt: dict[str, Any]) -> None:
        try:
            self._apply_state(ckpt)
        except RunError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, IndexError, RuntimeError) as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise RunError(
                f"{self.resume_path} does not fit this run ({type(e).__name__}: {first[:300]})",
                hint="it is damaged or from another run: start a new run in another --output",
            ) from None

    def _apply_state(self, ckpt: dict[str, Any]) -> None:
        if ckpt.get("version") != CHECKPOINT_VERSION:
            raise RunError(
                f"{self.resume_path}: unsupported checkpoint version {ckpt.get('version')} (this zoo writes "
                f"{CHECKPOINT_VERSION})",
                hint="resume it with the zoo version that wrote it",
            )
        arch = model_arch(self.model_without_ddp)
        if ckpt.get("arch") != arch:
            raise RunError(f"{self.resume_path} is a checkpoint of {ckpt.get('arch')}, not {arch}",
                           hint="resume with the model the run trains")  # fmt: skip
        self.model_without_ddp.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.global_step = ckpt["global_step"]
        self.start_epoch, self.start_batch = ckpt["epoch"], ckpt["batch"]
        self.schedule_changes = list(ckpt.get("schedule_changes") or [])
        if self.scheduler is not None and ckpt.get("scheduler") is not None:
            planned = (ckpt.get("recipe") or {}).get("epochs", self.recipe.epochs)
            if planned == self.recipe.epochs:
                self.scheduler.load_state_dict(ckpt["scheduler"])
            else:
                self._reschedule(planned)
        if self.scaler is not None and ckpt.get("scaler") is not None:
            self.scaler.load_state_dict(ckpt["scaler"])
        if self.ema is not None and ckpt.get("ema") is not None:
            self.ema.module.load_state_dict(ckpt["ema"])
        self.best_metric, self.best_epoch = ckpt["best_metric"], ckpt["best_epoch"]
        if ckpt.get("best_metric_name") is None and self.val_set is None and self.best_metric is not None:
            self.best_metric = -self.best_metric  # older checkpoints kept the negated training loss
        self.history = list(ckpt.get("history") or [])
        self.partial = ckpt.get("partial")
        self._restore_rank_state(ckpt)

    def _restore_rank_state(self, ckpt: dict[str, Any]) -> None:
        # Older checkpoints hold rank 0's states only.
        ranks = ckpt.get("ranks") or [{"rng": ckpt["rng"], "loader_generator": ckpt.get("loader_generator")}]
        if len(ranks) != self.world:
            if self.is_main:
                warnings.warn(
                    f"{self.resume_path} was written by {len(ranks)} process(es) and this run has {self.world}: "
                    "the data order and each process's random streams restart, so the resumed run is not "
                    "identical to an uninterrupted one", stacklevel=6,
                )  # fmt: skip
            seed_everything(self.recipe.seed + self.global_step + self.rank)
            return
        mine = ranks[self.rank]
        self.partial = mine.get("partial", self.partial)
        set_rng_state(mine["rng"])
        if mine.get("loader_generator") is not None and not self.tensor_data:
            self.loader_generator.set_state(mine["loader_generator"])

    def _reschedule(self, planned: int) -> None:
        """Continue a run planned for ``planned`` epochs under a schedule for ``recipe.epochs``.

        timm's ``load_state_dict`` would bring back the old length (``t_initial``) and so train the extra
        epochs at ``min_lr``. The scheduler built for the new length is kept instead and placed at the
        current step; the change is recorded in run.json and the checkpoint.
        """
        r = self.recipe
        before = self.optimizer.param_groups[0]["lr"]
        if r.sched_on_updates:
            self.scheduler.step_update(num_updates=self.global_step)
        else:
            self.scheduler.step(self.start_epoch)
        after = self.optimizer.param_groups[0]["lr"]
        self.schedule_changes.append({"at_epoch": self.start_epoch, "at_step": self.global_step,
                                      "from_epochs": planned, "to_epochs": r.epochs, "lr_before": before,
                                      "lr_after": after})  # fmt: skip
        if self.is_main:
            warnings.warn(
                f"the run was planned for {planned} epochs and now runs {r.epochs}: its {r.sched} schedule is "
                f"recomputed for {r.epochs} epochs from step {self.global_step} (lr {before:.3g} -> {after:.3g})",
                stacklevel=6,
            )

    def _save_checkpoint(self, epoch: int, batch: int = 0, partial: dict[str, float] | None = None) -> None:
        """Write last.pt (rank 0); every rank calls this, since the checkpoint gathers each rank's RNG states."""
        if self.out_dir is None:
            return
        ranks = self._rank_states(partial)
        if self.is_main:
            atomic_torch_save(self._state(epoch, batch, partial, ranks), self.out_dir / "last.pt")

    def _model_config(self) -> dict[str, Any]:
        from zoo.models.cfg import without_source

        m = self.model_without_ddp
        cfg = without_source(getattr(m, "pretrained_cfg", None) or {})  # the run's weights are its own file's
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
            "architecture": model_arch(m),
            "model_args": self.model_args,
            "num_classes": cfg["num_classes"],
            "num_features": getattr(m, "num_features", None),
            "label_names": cfg.get("label_names"),
            "pretrained_cfg": cfg,
            "weights": "best.safetensors",
        }

    def _write_run_json(self, status: str, error: str | None = None, final: bool = False) -> None:
        """Write run.json; a ``final`` status must land even on a full disk (then it overwrites in place)."""
        if self.out_dir is None or not self.is_main:
            return
        record = self._run_record(status, error)
        try:
            write_json(record, self.out_dir / "run.json")
        except OSError:
            if not final:
                raise
            # No room for a temporary file: overwrite run.json in place (its old blocks are reused).
            try:
                with open(self.out_dir / "run.json", "r+" if (self.out_dir / "run.json").exists() else "w") as f:
                    f.truncate(0)
                    f.write(json.dumps(record, indent=2, default=json_default) + "\n")
            except OSError as e:
                warnings.warn(f"could not record the run's end ({status}) in {self.out_dir / 'run.json'}: {e}",
                              stacklevel=3)  # fmt: skip

    def _run_record(self, status: str, error: str | None) -> dict[str, Any]:
        return {
            **self.run_info,
            "status": status,
            "error": error,
            "architecture": model_arch(self.model_without_ddp),
            "model_args": self.model_args,
            "label_names": self.label_names,
            "data_identity": {k: v for k, v in self._identity().items() if k in ("train_data", "val_data")},
            "recipe": self.recipe.to_dict(),
            "device": str(self.device),
            "precision": f"{str(self.amp_dtype).removeprefix('torch.')} autocast" if self.amp else "float32",
            "world_size": self.world,
            "deterministic": self.deterministic,
            "epochs_done": len(self.history),
            "best_metric": self.best_metric,
            "best_metric_name": self.best_metric_name,
            "best_epoch": self.best_epoch,
            "schedule_changes": self.schedule_changes,
            "warnings": getattr(self, "warnings", []),
            "last": self.history[-1] if self.history else None,
            "torch": torch.__version__,
            "updated": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
