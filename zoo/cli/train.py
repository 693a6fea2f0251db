"""``zoo train``: train a model on MNIST, Fashion-MNIST, CIFAR or an image folder.

``torchrun --nproc-per-node N -m zoo train ...`` runs the same command under DistributedDataParallel.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import sys
import time
import typing
from pathlib import Path
from typing import Any

from zoo.errors import ArgumentValueError, RecipeError, RunError
from zoo.utils import parse_device, set_threads

# Recipe fields that are descriptions rather than settings: no option of their own.
_NOT_OPTIONS = ("name", "description", "notes")


def recipe_options() -> dict[str, type]:
    """Recipe field -> its type, for every field a command-line option overrides (from the dataclass)."""
    from zoo.training.recipes import Recipe

    hints = typing.get_type_hints(Recipe)
    return {f.name: hints[f.name] for f in dataclasses.fields(Recipe) if f.name not in _NOT_OPTIONS}


def add_bad_image_options(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--skip-bad-images`` (``args.strict_images`` False); an unreadable image is an error without it."""
    parser.add_argument("--skip-bad-images", dest="strict_images", action="store_false",
                        help="leave out unreadable images (listed on stderr) instead of failing")  # fmt: skip
    parser.add_argument("--strict-images", action="store_true", help=argparse.SUPPRESS)  # the default; older commands


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``zoo train``."""
    from zoo.training.recipes import list_recipes

    parser.add_argument("model", nargs="?", help="model name (arch, or arch.tag with --pretrained)")
    data = parser.add_argument_group("data")
    data.add_argument("--dataset", help="mnist, fashion_mnist, cifar10, cifar100, imagefolder (or imagefolder:PATH)")
    data.add_argument("--data-dir", help="the dataset's folder, or a .tar.gz of an image folder (extracted into zoo's "
                      "data cache once); see docs/training.md for the layouts")  # fmt: skip
    data.add_argument("--val-split", type=float,
                      help="hold out this fraction of the training images to choose the kept epoch (default: 0.1 "
                      "for an image folder without val/ or test/; otherwise none, and the last epoch is kept). "
                      "A test split is only reported, never used to choose")  # fmt: skip
    data.add_argument("--download", action="store_true", help="let torchvision download CIFAR (needs internet)")
    add_bad_image_options(data)
    data.add_argument("--train-subset", type=int, help="train on a seeded random subset of this many images")
    data.add_argument("--val-subset", type=int, help="validate and test on seeded random subsets of this many images")

    rec = parser.add_argument_group("recipe (any option below overrides the recipe's value)")
    rec.add_argument("--recipe", default="fast", help=f"one of {', '.join(list_recipes())} (default fast)")
    rec.add_argument("--print-recipe", action="store_true", help="print the resolved recipe and exit")
    for name, typ in recipe_options().items():
        if typ is bool:
            rec.add_argument(f"--{name.replace('_', '-')}", action=argparse.BooleanOptionalAction, default=None)
        else:
            rec.add_argument(f"--{name.replace('_', '-')}", type=typ, default=None, metavar=typ.__name__.upper())
    rec.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="set any recipe field")

    mdl = parser.add_argument_group("model")
    mdl.add_argument("--pretrained", action="store_true", help="start from the model's published weights")
    mdl.add_argument("--initial-checkpoint", metavar="FILE",
                     help="start from these weights (a safetensors file, e.g. a run's best.safetensors); a new "
                     "class count adapts the classifier")  # fmt: skip
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
            raise ArgumentValueError(f"{what} {item!r}: expected NAME=VALUE")
        out[key.strip().replace("-", "_")] = _parse_value(value.strip())
    return out


def resolve_recipe_from_args(args: argparse.Namespace, dataset_kind: str | None) -> Any:
    """The named recipe for the dataset kind, with every option given on the command line applied."""
    from zoo.training.recipes import get_recipe

    recipe = get_recipe(args.recipe, dataset_kind)
    return recipe.replace(**explicit_settings(args))


def explicit_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The recipe fields set on the command line (options and --set), typed as the recipe types them."""
    typed = recipe_options()
    overrides = {k: getattr(args, k) for k in typed if getattr(args, k, None) is not None}
    extra = _key_values(args.set, "--set")
    for k, v in extra.items():
        if k in typed and typed[k] is float and isinstance(v, int) and not isinstance(v, bool):
            extra[k] = float(v)
        elif k in typed and typed[k] is str:
            extra[k] = str(v)
        kinds = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
        if k in typed and typed[k] in kinds and type(extra[k]) is not typed[k]:
            raise RecipeError(f"--set {k}={v}: {k} takes {kinds[typed[k]]}")
    return {**extra, **overrides}


def _refuse_changed_settings(args: argparse.Namespace, saved: dict[str, Any], out_dir: Path) -> None:
    """--resume continues a run under its own recipe: an option that would change it is refused, by name.

    Only options that decide how long and how fast the run goes (RESUME_MAY_CHANGE: --epochs, --workers,
    --eval-batch-size) may differ; applying others half-way would make a run that no recipe describes.
    """
    from zoo.training.checkpoint import RESUME_MAY_CHANGE

    given = explicit_settings(args)
    if any(a == "--recipe" or a.startswith("--recipe=") for a in getattr(args, "argv", None) or []):
        given["name"] = args.recipe
    changed = [f"--{k.replace('_', '-')} {v} (the run's: {saved[k]})" for k, v in given.items()
               if k in saved and k not in RESUME_MAY_CHANGE and v != saved[k]]  # fmt: skip
    if changed:
        raise RunError(
            f"--resume continues the run in {out_dir} under its own recipe; these options would change it: "
            + ", ".join(changed),
            hint="drop them to resume (only --epochs, --workers and --eval-batch-size may change), or start a "
            f"new run with another --output (e.g. fine-tuning from {out_dir / 'best.safetensors'})",
        )


def main(args: argparse.Namespace) -> int:
    """Run ``zoo train``."""
    from zoo.data import create_datasets, dataset_shape, holdout_split, parse_dataset, subset
    from zoo.data.transforms import Augment
    from zoo.training import fit
    from zoo.training.checkpoint import resumed_recipe, seed_everything
    from zoo.training.distributed import distributed_session, rank_zero_first
    from zoo.training.finetune import build_training_model
    from zoo.training.recipes import fit_recipe_to_data, format_recipe

    dataset_kind = parse_dataset(args.dataset, args.data_dir or ".")[0] if args.dataset else None
    recipe = resolve_recipe_from_args(args, dataset_kind)
    if args.print_recipe:
        print(f"# recipe {recipe.name}" + (f" for {dataset_kind}" if dataset_kind else ""))
        print(format_recipe(recipe))
        return 0
    if not args.model:
        raise ArgumentValueError("name the model to train, e.g. `zoo train mnist_cnn --dataset mnist --data-dir DATA`")
    if not args.dataset:
        raise ArgumentValueError("--dataset is required (mnist, fashion_mnist, cifar10, cifar100, imagefolder:PATH)")
    if args.epochs is not None and args.epochs < 1:
        raise RecipeError(f"--epochs {args.epochs}: a run needs at least one epoch — give --epochs 1 or more")
    set_threads(args.threads)
    parse_device(args.device)  # an unknown device or a missing GPU is one clear line, before any data is read

    with distributed_session(args.device) as (rank, _world, device):
        out_dir = _output_dir(args, dataset_kind)
        if args.resume is not None:
            resume_path = Path(args.resume) if args.resume else out_dir
            if resume_path.is_file():
                out_dir = resume_path.parent
            elif args.resume:
                out_dir = resume_path
            saved = _saved_recipe(out_dir)
            if saved:
                _refuse_changed_settings(args, saved, out_dir)
                recipe = resumed_recipe(saved, recipe, changed=explicit_settings(args))
        seed_everything(recipe.seed)
        model_kwargs: dict[str, Any] = _key_values(args.model_arg, "--model-arg")
        if args.stem:
            model_kwargs["stem"] = args.stem
        # The dataset decides classes and channels, known before its images are read (an image folder's from
        # its class folders): the one model is built first, and its cfg tells an image folder its input size
        # and, with --pretrained, every dataset the weights' normalisation. Train and validation transforms
        # both work at that input size (the stem's: 32x32 for the CIFAR stem, whatever the weights had).
        aug = Augment(crop_pad=recipe.crop_pad, hflip=recipe.hflip, rand_augment=recipe.rand_augment)
        cfg, normalization, model = None, None, None
        start = {"pretrained": args.pretrained, "checkpoint_path": args.initial_checkpoint}
        from_weights = args.pretrained or args.initial_checkpoint is not None
        # Under torchrun, rank 0 downloads (the weights, --download's data set) before the other ranks read.
        with rank_zero_first():
            shape = dataset_shape(args.dataset, args.data_dir)
            if shape is not None:
                model = build_training_model(args.model, **start, **{**model_kwargs, **_shape_kwargs(shape)})
                cfg = model.pretrained_cfg
            normalization = (cfg["mean"], cfg["std"]) if from_weights and cfg is not None else None
            folder_split = args.val_split if dataset_kind == "imagefolder" else None
            train_set, eval_set, info = create_datasets(
                args.dataset, args.data_dir, model_cfg=cfg, augment=aug, val_split=folder_split, seed=recipe.seed,
                strict_images=args.strict_images, download=args.download and rank == 0,
                normalization=normalization,
            )  # fmt: skip
        # An official test split is only reported; the weights are kept by a held-out part of the training
        # images (--val-split) or, without one, are the last epoch's.
        val_set, test_set = (eval_set, None) if info.eval_split == "holdout" else (None, eval_set)
        if args.val_split is not None and val_set is None:
            eval_tf = getattr(test_set, "transform", None)  # a streamed folder's held-out part is not augmented
            train_set, val_set = holdout_split(train_set, args.val_split, recipe.seed, eval_tf)
        train_set = subset(train_set, args.train_subset, recipe.seed)
        val_set, test_set = (subset(s, args.val_subset, recipe.seed + 1) if s is not None else None
                             for s in (val_set, test_set))  # fmt: skip
        if args.resume is None and dataset_kind == "imagefolder":
            # A folder of a few hundred photos is not what the recipe was tuned for: scale it, and say how.
            fitted = fit_recipe_to_data(recipe, len(train_set), set(explicit_settings(args)))
            if rank == 0:
                for note in fitted.notes[len(recipe.notes) :]:
                    print(f"recipe: {note} (set the option to keep the recipe's value)", flush=True)
            recipe = fitted
        model_kwargs.update(_shape_kwargs((info.num_classes, info.in_chans)))
        if shape != (info.num_classes, info.in_chans):  # the folder's class folders changed while it was read
            model = build_training_model(args.model, **start, **model_kwargs)
        run_info = {
            "dataset": args.dataset,
            "dataset_kind": info.name,
            "data_dir": info.root,
            "data": info.extra,
            "input_size": info.input_size,
            "train_images": len(train_set),
            "val_images": len(val_set) if val_set is not None else 0,
            "test_images": len(test_set) if test_set is not None else 0,
            "val_split": args.val_split,
            "selection": "best val_acc1 (held out of the training images)" if val_set is not None else "last epoch",
            "seed": recipe.seed,
            "pretrained": args.pretrained,
            "initial_checkpoint": args.initial_checkpoint,
            "command": _process_command(args),
            "zoo_command": "zoo train " + shlex.join(_argv_for(args)),
        }
        if args.resume is not None:
            run_info.update(_original_commands(out_dir, run_info["zoo_command"]))
        result = fit(
            model, train_set, val_set, recipe, out_dir, resume=out_dir if args.resume is not None else None,
            test_set=test_set,
            loggers=args.logger, device=device, deterministic=args.deterministic, label_names=info.classes,
            model_args=model_kwargs, run_info=run_info,
            logger_options={"visdom_server": args.visdom_server, "visdom_port": args.visdom_port,
                            "visdom_env": args.visdom_env},
        )  # fmt: skip
    if rank == 0 and result.status == "finished":
        print(f"done: {_best_line(result)}; run folder {out_dir}")
    # Stopped by a signal: exit as a shell reports it, 128 + its number (130 Ctrl-C, 143 SIGTERM).
    return 128 + (result.stopped_by or 2) if result.status == "interrupted" else 0


def _shape_kwargs(shape: tuple[int, int]) -> dict[str, int]:
    return {"num_classes": shape[0], "in_chans": shape[1]}


def _best_line(result: Any) -> str:
    if result.best_metric is None:
        return "no epoch finished"
    kept = next((r for r in result.history if r["epoch"] == result.best_epoch), {})
    test = f"; its test top-1 {kept['test_acc1']:.2f} %" if kept.get("test_acc1") is not None else ""
    if result.best_metric_name == "val_acc1":
        return f"kept epoch {result.best_epoch}, best held-out val top-1 {result.best_metric:.2f} %{test}"
    return f"kept the last epoch, {result.best_epoch}{test}"


def _argv_for(args: argparse.Namespace) -> list[str]:
    # zoo.cli.main records the words after `train`; a caller that built the Namespace itself has sys.argv.
    if getattr(args, "argv", None) is not None:
        return list(args.argv)
    argv = sys.argv[1:]
    return argv[1:] if argv and argv[0] == "train" else argv


def _process_command(args: argparse.Namespace) -> str:
    """The command line as typed (torchrun, python -m zoo train ...) when this process is that command."""
    argv = _argv_for(args)
    process = [os.path.basename(sys.argv[0]), *sys.argv[1:]]
    if not argv or process[-len(argv) :] == argv:
        return shlex.join(process)
    return "zoo train " + shlex.join(argv)


def _output_dir(args: argparse.Namespace, dataset_kind: str | None) -> Path:
    if args.output:
        if Path(args.output).exists() and not Path(args.output).is_dir():
            raise RunError(
                f"--output {args.output} is a file", hint="give a folder for the run (it is created if missing)"
            )
        return Path(args.output)
    if args.resume:
        p = Path(args.resume)
        return p.parent if p.is_file() else p
    if args.resume is not None:
        raise ArgumentValueError("--resume without a path needs --output RUN_FOLDER")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{args.model.replace('.', '_')}-{dataset_kind}-{stamp}"


def _original_commands(out_dir: Path, now: str) -> dict[str, Any]:
    """A resumed run keeps the command that started it, and lists the commands that continued it."""
    from zoo.utils.files import parse_json

    try:
        record = parse_json((out_dir / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(record, dict) or not record.get("zoo_command"):
        return {}
    kept = {k: record[k] for k in ("command", "zoo_command") if isinstance(record.get(k), str)}
    earlier = record.get("resumed_with") if isinstance(record.get("resumed_with"), list) else []
    return {**kept, "resumed_with": [*earlier, now]}


def _saved_recipe(out_dir: Path) -> dict[str, Any] | None:
    path = out_dir / "last.pt"
    if not path.is_file():
        raise FileNotFoundError(f"nothing to resume: {path} does not exist")
    run = out_dir / "run.json"
    if not run.is_file():
        return None
    hint = "restore run.json, or delete it: the resume then takes the run's settings from last.pt"
    try:
        record = json.loads(run.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise RunError(f"{run} is not valid JSON ({str(e).splitlines()[0][:200]})", hint=hint) from None
    if not isinstance(record, dict):
        raise RunError(f"{run} holds a {type(record).__name__}, not a run's record", hint=hint)
    recipe = record.get("recipe")
    if recipe is not None and not isinstance(recipe, dict):
        raise RunError(f"{run}: its recipe is a {type(recipe).__name__}, not the run's settings", hint=hint)
    return recipe
