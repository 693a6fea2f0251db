"""What ``zoo train`` does, as a library function: :func:`train` builds the model (before any image is read, so
that it sizes them), its data and recipe, then calls :func:`~zoo.training.trainer.fit`."""

from __future__ import annotations

import os
import shlex
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from zoo.errors import ArgumentValueError
from zoo.runs import CHOSE_EPOCH, RUN_JSON, is_run_folder, read_run, resume_point
from zoo.training.checkpoint import seed_everything
from zoo.training.distributed import distributed_session, rank_zero_first
from zoo.training.recipes import fit_recipe_to_data, get_recipe, read_recipe, resume_recipe
from zoo.training.trainer import FitResult
from zoo.utils import parse_device
from zoo.utils.files import check_output_folder
from zoo.utils.scores import score_text


def train(
    model: str,
    dataset: str,
    data_dir: str | None = None,
    *,
    recipe: str | None = None,
    settings: Mapping[str, Any] | None = None,
    output: str | os.PathLike[str] | None = None,
    resume: bool | str | os.PathLike[str] = False,
    val_split: float | None = None,
    train_subset: int | None = None,
    val_subset: int | None = None,
    pretrained: bool = False,
    initial_checkpoint: str | None = None,
    model_args: Mapping[str, Any] | None = None,
    download: bool = False,
    skip_bad_images: bool = False,
    loggers: Sequence[str] = (),
    logger_options: Mapping[str, Any] | None = None,
    device: str = "auto",
    deterministic: bool | None = None,
    argv: Sequence[str] | None = None,
) -> FitResult:
    """Train ``model`` on ``dataset`` as ``zoo train`` does: ``settings`` (recipe fields) override ``recipe``,
    ``resume`` continues the run in ``output`` (True) or the given one; ``argv`` is recorded in run.json."""
    from zoo.data import create_datasets, dataset_shape, holdout_split, parse_dataset, subset
    from zoo.data.transforms import Augment
    from zoo.training import trainer
    from zoo.training.finetune import build_training_model

    kind = parse_dataset(dataset, data_dir)[0]
    settings = dict(settings or {})
    explicit = {*settings, *(["name"] if recipe else [])}
    plan = get_recipe(recipe or "fast", kind).replace(**settings)
    parse_device(device)  # an unknown device or a missing GPU is one clear line, before any data is read
    with distributed_session(device) as (rank, _, dev):
        out_dir, run = _run_folder(model, kind, output, resume)
        if run is not None and run.recipe is not None:  # the run's own recipe, with what may change on a resume
            hint = "restore run.json, or delete it: a resume then takes the run's settings from last.pt"
            plan = resume_recipe(read_recipe(run.recipe, str(out_dir / RUN_JSON), hint), plan, explicit)
        seed_everything(plan.seed)
        args = dict(model_args or {})
        start = {"pretrained": pretrained, "checkpoint_path": initial_checkpoint}
        aug = Augment(crop_pad=plan.crop_pad, hflip=plan.hflip, rand_augment=plan.rand_augment)
        with rank_zero_first():  # under torchrun, rank 0 downloads (weights, data) before the other ranks read
            shape = dataset_shape(dataset, data_dir)
            built = None
            if shape is not None:
                built = build_training_model(model, **start, **args, num_classes=shape[0], in_chans=shape[1])
            cfg = built.pretrained_cfg if built is not None else None
            weights = pretrained or initial_checkpoint is not None
            train_set, eval_set, info = create_datasets(
                dataset,
                data_dir,
                model_cfg=cfg,
                augment=aug,
                val_split=val_split if kind == "imagefolder" else None,
                seed=plan.seed,
                strict_images=not skip_bad_images,
                download=download and rank == 0,
                normalization=(cfg["mean"], cfg["std"]) if weights and cfg is not None else None,
            )
        val_set, test_set = (eval_set, None) if info.eval_split == "holdout" else (None, eval_set)
        if val_split and val_set is None:  # a streamed folder's held-out part is not augmented
            train_set, val_set = holdout_split(train_set, val_split, plan.seed, getattr(test_set, "transform", None))
        train_set = subset(train_set, train_subset, plan.seed)
        val_set = subset(val_set, val_subset, plan.seed + 1) if val_set is not None else None
        test_set = subset(test_set, val_subset, plan.seed + 1) if test_set is not None else None
        if not resume and kind == "imagefolder":
            fitted = fit_recipe_to_data(plan, len(train_set), explicit)  # a few hundred photos: scale the recipe
            if rank == 0:
                for note in fitted.notes[len(plan.notes) :]:
                    print(f"recipe: {note} (set the option to keep the recipe's value)", flush=True)
            plan = fitted
        args.update(num_classes=info.num_classes, in_chans=info.in_chans)
        if shape != (info.num_classes, info.in_chans):  # the folder's class folders changed while it was read
            built = build_training_model(model, **start, **args)
        run_info = {
            "dataset": dataset,
            "dataset_kind": info.name,
            "data_dir": info.root,
            "data": info.extra,
            "input_size": info.input_size,
            "train_images": len(train_set),
            "val_images": len(val_set) if val_set is not None else 0,
            "test_images": len(test_set) if test_set is not None else 0,
            "val_split": val_split,
            "selection": f"{CHOSE_EPOCH}, held out of the training images" if val_set is not None else "last epoch",
            "seed": plan.seed,
            "pretrained": pretrained,
            "initial_checkpoint": initial_checkpoint,
            **_commands(argv),
        }
        if run is not None and run.zoo_command:  # a resumed run keeps the command that started it
            run_info.update(
                command=run.command or run_info["command"],
                zoo_command=run.zoo_command,
                resumed_with=[*run.resumed_with, run_info["zoo_command"]],
            )
        result = trainer.fit(
            built,
            train_set,
            val_set,
            plan,
            out_dir,
            resume=out_dir if resume else None,
            test_set=test_set,
            loggers=list(loggers),
            device=dev,
            deterministic=deterministic,
            label_names=info.classes,
            model_args=args,
            run_info=run_info,
            logger_options=dict(logger_options or {}),
        )
    if rank == 0 and result.status == "finished":
        print(f"done: {_best_line(result)}; run folder {out_dir}")
    return result


def _run_folder(model: str, kind: str, output: Any, resume: Any) -> tuple[Path, Any]:
    """The run folder and, when resuming, its run.json record (None without one)."""
    if resume not in (None, False, True):
        out = Path(resume)
        out = out.parent if out.is_file() else out
    elif output is not None:
        out = Path(output)
    elif resume:
        raise ArgumentValueError("--resume without a path needs --output RUN_FOLDER")
    else:
        out = Path("runs") / f"{model.replace('.', '_')}-{kind}-{time.strftime('%Y%m%d-%H%M%S')}"
    if not resume:
        check_output_folder(out, "--output", "training run", is_run_folder)  # before any data is read
        return out, None
    resume_point(out)  # nothing to resume is one clear line, before any data is read
    return out, read_run(out) if (out / RUN_JSON).is_file() else None


def _commands(argv: Sequence[str] | None) -> dict[str, str | None]:
    """The command line as typed (torchrun, python -m zoo train ...) and as ``zoo train`` words."""
    process = [os.path.basename(sys.argv[0]), *sys.argv[1:]]
    if argv is None:
        return {"command": shlex.join(process), "zoo_command": None}
    zoo_command = "zoo train " + shlex.join(argv)
    return {
        "command": shlex.join(process) if not argv or process[-len(argv) :] == list(argv) else zoo_command,
        "zoo_command": zoo_command,
    }


def _best_line(result: FitResult) -> str:
    if result.best_metric is None:
        return "no epoch finished"
    kept = next((r for r in result.history if r["epoch"] == result.best_epoch), {})
    scores = {
        s: score_text(kept[f"{s}_acc1"], kept[f"{s}_count"])
        for s in ("val", "test")
        if kept.get(f"{s}_acc1") is not None
    }
    test = f"; its test top-1 {scores['test']}" if "test" in scores else ""
    if result.best_metric_name == "val_acc1":
        return f"kept epoch {result.best_epoch}, validation top-1 {scores['val']} (the images that chose it){test}"
    return f"kept the last epoch, {result.best_epoch}{test}"
