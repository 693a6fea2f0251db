"""Training recipes: named, printable sets of hyper-parameters that command-line options override; the ``seed-*``
ones are the course's labs as written, ``fast`` is tuned for short runs per dataset kind."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from zoo.errors import RecipeError, RunError
from zoo.utils.checks import Invalid, int_in, number_in, one_of, record, reported, text

# The ranges of the fields whose range is not "finite and >= 0" (for a number) or ">= 0" (for an int).
_BELOW_ONE, _AT_MOST_ONE = ("momentum", "label_smoothing", "ema_decay"), ("mixup_prob", "hflip")
_AT_LEAST_ONE = ("epochs", "batch_size", "eval_batch_size")
# Recipe fields a resumed run may change: they decide how long it runs and how fast, not what it computes.
RESUME_MAY_CHANGE = ("epochs", "workers", "eval_batch_size")


@dataclass
class Recipe:
    """Every hyper-parameter of a training run. Names follow timm's train script where one exists."""

    name: str = "custom"
    description: str = ""
    epochs: int = 10
    batch_size: int = 128  # global: split across processes under torchrun
    # optimiser (timm.optim.create_optimizer_v2 names: adam, adamw, momentum = SGD, sgd = SGD-Nesterov ...)
    opt: str = "adamw"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    filter_bias_and_bn: bool = True  # no weight decay on biases and norm layers
    # schedule (timm.scheduler.create_scheduler_v2 names: cosine, step, constant, none ...)
    sched: str = "none"
    sched_on_updates: bool = False  # step the schedule every batch rather than every epoch
    decay_epochs: float = 0.0
    decay_rate: float = 0.1
    warmup_epochs: float = 0.0
    warmup_lr: float = 1e-5
    min_lr: float = 0.0
    # regularisation
    label_smoothing: float = 0.0
    mixup: float = 0.0
    cutmix: float = 0.0
    mixup_prob: float = 1.0
    ema: bool = False
    ema_decay: float = 0.999
    grad_clip: float = 0.0
    # augmentation: translation/crop padding in pixels, flip probability, timm RandAugment string
    crop_pad: int = 0
    hflip: float = 0.0
    rand_augment: str = ""
    # speed: amp is float16 autocast on CUDA, bfloat16 on a CPU with native bf16 (AVX512-BF16/AMX), off elsewhere;
    # evaluation stays float32 on the CPU. channels_last where it is faster: CUDA, and CPU convolutions
    amp: bool = True
    channels_last: bool = True
    workers: int = 2
    eval_batch_size: int = 1000
    seed: int = 42
    # which weights val metrics, best.safetensors and the final model use when ema is on: "ema" or "model"
    eval_model: str = "ema"
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        # Each field is checked by its type, within its range (above), text short, a flag True or False.
        with reported("recipe", RecipeError, hint="`zoo train --print-recipe` shows every setting of a recipe"):
            for f in dataclasses.fields(self):
                value = getattr(self, f.name)
                if f.type == "float":
                    high, below = 1 if f.name in _AT_MOST_ONE else None, 1 if f.name in _BELOW_ONE else None
                    setattr(self, f.name, float(number_in(f.name, value, 0, high, below=below)))
                elif f.type == "int":
                    int_in(f.name, value, 1 if f.name in _AT_LEAST_ONE else None if f.name == "seed" else 0)
                elif f.type == "bool":
                    one_of(f.name, value, (True, False))
                elif f.type == "str":
                    text(f.name, value, 4096 if f.name == "description" else 200)
            one_of("eval_model", self.eval_model, ("ema", "model"))
            if not isinstance(self.notes, list) or not all(isinstance(n, str) for n in self.notes):
                raise Invalid("notes", self.notes, "must be a list of strings")

    def replace(self, **changes: Any) -> Recipe:
        """A copy with ``changes`` applied; an unknown field or a wrong value is a RecipeError naming it."""
        return record(Recipe, {**self.to_dict(), **changes}, "recipe", RecipeError)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# The built-in recipes, a column each (fast's, one per dataset kind); a field not listed keeps Recipe's default.
# The course's labs ran in float32 and decayed every parameter. fast's mnist column is tuned on this project's 2-core
# CPU: >= 99.2 % MNIST test accuracy inside 90 s (benchmarks/); over 4 seeds +-1 px shifts beat +-2 px and none,
# lr 5e-3 beat 3e-3.
_NAMES = ("seed-mnist", "seed-vgg-cifar", "seed-resnet-cifar", "fast", "fast", "fast", "fast", "fast")
_KINDS = ("", "", "", "mnist", "fashion_mnist", "cifar10", "cifar100", "imagefolder")
_RA_CIFAR, _RA_FOLDER = "rand-m5-n2-mstd0.5", "rand-m9-mstd0.5-inc1"
_TABLE = (  # aligned, a row reads as one setting across the recipes
    #                      seed-mnist seed-vgg    seed-resnet fast:mnist fashion   cifar10    cifar100   imagefolder
    ("epochs",             15,        50,         150,        4,         10,       30,        40,        30),
    ("batch_size",         100,       512,        256,        128,       128,      256,       256,       64),
    ("opt",                "adam",    "momentum", "momentum", "adamw",   "adamw",  "sgd",     "sgd",     "adamw"),
    ("lr",                 1e-3,      0.005,      0.1,        5e-3,      3e-3,     0.2,       0.2,       1e-3),
    ("weight_decay",       0.0,       0.0,        5e-4,       0.01,      0.05,     5e-4,      5e-4,      0.05),
    ("filter_bias_and_bn", False,     False,      False,      True,      True,     True,      True,      True),
    ("sched",              "none",    "step",     "step",     "cosine",  "cosine", "cosine",  "cosine",  "cosine"),
    ("sched_on_updates",   False,     False,      False,      True,      True,     True,      True,      True),
    ("decay_epochs",       0,         5,          10,         0,         0,        0,         0,         0),
    ("decay_rate",         0.1,       0.9,        0.5,        0.1,       0.1,      0.1,       0.1,       0.1),
    ("warmup_epochs",      0,         0,          0,          0.3,       0.5,      1,         1,         2),
    ("warmup_lr",          1e-5,      1e-5,       1e-5,       1e-4,      1e-4,     0.01,      0.01,      1e-5),
    ("min_lr",             0.0,       0.0,        0.0,        1e-5,      1e-5,     0.0,       0.0,       0.0),
    ("label_smoothing",    0.0,       0.0,        0.0,        0.1,       0.1,      0.1,       0.1,       0.1),
    ("mixup",              0.0,       0.0,        0.0,        0.0,       0.0,      0.0,       0.0,       0.2),
    ("cutmix",             0.0,       0.0,        0.0,        0.0,       0.0,      0.0,       0.0,       1.0),
    ("mixup_prob",         1.0,       1.0,        1.0,        1.0,       1.0,      1.0,       1.0,       0.5),
    ("ema",                False,     False,      False,      True,      True,     True,      True,      True),
    ("ema_decay",          0.999,     0.999,      0.999,      0.998,     0.998,    0.999,     0.999,     0.998),
    ("crop_pad",           0,         0,          4,          1,         2,        4,         4,         0),
    ("hflip",              0.0,       0.0,        0.0,        0.0,       0.5,      0.5,       0.5,       0.5),
    ("rand_augment",       "",        "",         "",         "",        "",       _RA_CIFAR, _RA_CIFAR, _RA_FOLDER),
    ("amp",                False,     False,      False,      True,      True,     True,      True,      True),
    ("eval_model",         "model",   "model",    "model",    "ema",     "ema",    "ema",     "ema",     "ema"),
)  # fmt: skip
DESCRIPTIONS = {
    "seed-mnist": "Lab10-2: Adam 1e-3, batch 100, 15 epochs, no schedule or augmentation",
    "seed-vgg-cifar": "Lab10-5: SGD 0.005 momentum 0.9, StepLR(5, 0.9), batch 512, 50 epochs",
    "seed-resnet-cifar": "Lab10-6: SGD 0.1 momentum 0.9 wd 5e-4, StepLR(10, 0.5), batch 256, random crop",
    "fast": "cosine with warm-up per batch, label smoothing, EMA, augmentation fitted to the dataset",
}
# name -> {dataset kind ("" where one set serves every kind) -> the recipe's settings for it}
RECIPES: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in DESCRIPTIONS}
for _i, (_name, _kind) in enumerate(zip(_NAMES, _KINDS, strict=True)):
    RECIPES[_name][_kind] = {"description": DESCRIPTIONS[_name], **{f: values[_i] for f, *values in _TABLE}}


def list_recipes() -> list[str]:
    """The names of the built-in recipes."""
    return list(RECIPES)


def get_recipe(name: str, dataset: str | None = None, **overrides: Any) -> Recipe:
    """The recipe ``name`` for a dataset kind (``mnist``, ``cifar10``, ``imagefolder`` ...), with ``overrides``;
    ``fast`` uses its ``mnist`` settings for a kind it has none for, and says so in ``notes``."""
    if name not in RECIPES:
        raise RecipeError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)}")
    per_kind = RECIPES[name]
    kind = dataset if dataset in per_kind else next(iter(per_kind))
    values: dict[str, Any] = {"name": name, **per_kind[kind]}
    if "" not in per_kind and kind != dataset:
        said = f"no {name} settings for {dataset}" if dataset else "no dataset kind was given"
        values["notes"] = [f"{said}; using the {name} recipe's settings for {kind}"]
        if not dataset:  # zoo.fit(model, data) without one: say so rather than train with MNIST's settings
            warnings.warn(
                f"{values['notes'][0]} (pass run_info={{'dataset_kind': ...}} to zoo.fit, or a Recipe)", stacklevel=3
            )
    return Recipe().replace(**values).replace(**overrides)


# Below these, a recipe made for tens of thousands of images (image folders: 30 epochs, batch 64) is scaled down.
MIN_STEPS_PER_EPOCH = 10
MIN_STEPS_FOR_MIXUP = 1000


def fit_recipe_to_data(recipe: Recipe, train_images: int, explicit: Collection[str] = ()) -> Recipe:
    """``recipe`` scaled to a small training set (each change said in ``notes``), leaving the fields in ``explicit``
    (set by the user) as they are."""
    # A recipe made for thousands of images fails on a few hundred: docs/training.md says how it is scaled.
    changes: dict[str, Any] = {}
    notes = list(recipe.notes)
    batch = recipe.batch_size
    if "batch_size" not in explicit and train_images // batch < MIN_STEPS_PER_EPOCH and batch > 8:
        fitted = max(8, 2 ** max(3, (train_images // MIN_STEPS_PER_EPOCH).bit_length() - 1))
        if fitted < batch:
            changes["batch_size"] = fitted
            # Counted as the run will count them (the last, smaller batch is a step too: see `steps`).
            notes.append(
                f"batch {batch} -> {fitted}: {train_images} images give {-(-train_images // fitted)} steps an epoch"
            )
    steps = max(1, -(-train_images // changes.get("batch_size", batch))) * recipe.epochs
    if "warmup_epochs" not in explicit and recipe.warmup_epochs > 0.1 * recipe.epochs:
        changes["warmup_epochs"] = round(0.1 * recipe.epochs, 3)
        notes.append(f"warm-up {recipe.warmup_epochs} -> {changes['warmup_epochs']} epochs (a tenth of the run)")
    if recipe.ema and not {"ema", "ema_decay"} & set(explicit):
        if steps < 50:
            changes["ema"] = False
            notes.append(f"no EMA: {steps} steps are too few to average")
        elif 1.0 / (1.0 - recipe.ema_decay) > steps / 5:
            changes["ema_decay"] = round(1.0 - 5.0 / steps, 4)
            horizon = f"a horizon of a fifth of {steps} steps"
            notes.append(f"EMA decay {recipe.ema_decay} -> {changes['ema_decay']} ({horizon})")
    if (recipe.mixup or recipe.cutmix) and steps < MIN_STEPS_FOR_MIXUP and not {"mixup", "cutmix"} & set(explicit):
        changes.update(mixup=0.0, cutmix=0.0)
        notes.append(f"no mixup/CutMix: {steps} steps are too few for them to pay")
    return recipe.replace(**changes, notes=notes) if changes else recipe


def format_recipe(recipe: Recipe) -> str:
    """``key: value`` lines, in field order, for ``--print-recipe``."""
    d = recipe.to_dict()
    width = max(map(len, d))
    lines = [f"{k:<{width}}  {v if v != '' else repr(v)}" for k, v in d.items() if k != "notes"]
    lines += [f"# {n}" for n in recipe.notes]
    return "\n".join(lines)


def read_recipe(data: Any, where: str, hint: str | None = None) -> Recipe:
    """The recipe a run recorded (in run.json or last.pt); a wrong value is a RunError naming ``where``."""
    try:
        return record(Recipe, data, f"{where}: recipe", RunError, hint)
    except RecipeError as e:
        raise RunError(f"{where}: {e.args[0]}", hint=hint) from None


def resume_recipe(saved: Recipe, given: Recipe, explicit: Collection[str] | None = None) -> Recipe:
    """The run's own recipe with ``given``'s values of RESUME_MAY_CHANGE; another field set (``explicit``, default
    every one) that differs is a RunError naming it: half-way, it would make a run no recipe describes."""
    settings = [f.name for f in dataclasses.fields(Recipe) if f.name not in ("name", "description", "notes")]
    compared = [k for k in (settings if explicit is None else explicit) if k not in RESUME_MAY_CHANGE]
    changed = [
        f"{k}={getattr(given, k)!r} (the run's: {getattr(saved, k)!r})"
        for k in compared
        if getattr(given, k) != getattr(saved, k)
    ]
    if changed:
        raise RunError(
            f"a resumed run keeps its recipe, but {', '.join(changed)} differ",
            hint="only epochs, workers and eval_batch_size may change; to train with other settings, start a new "
            "run in another folder (fine-tuning from this run's best.safetensors)",
        )
    return saved.replace(**{k: getattr(given, k) for k in RESUME_MAY_CHANGE if explicit is None or k in explicit})
