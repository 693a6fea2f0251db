"""A training run's folder (run.json, config.json, last.pt, best.safetensors): the typed records of its files, and
the one loader that turns a checkpoint (a run, a published folder or a weights file) into a model."""

from __future__ import annotations

import json
import os
import re
import warnings
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from zoo.errors import ArgumentValueError, RunError, WeightsFileError
from zoo.factory import check_model_args, create_model
from zoo.pretrained.files import WeightsMetadata, load_file, read_pickle_checkpoint
from zoo.registry import split_model_name_tag
from zoo.utils import checks, shorten
from zoo.utils.files import json_default, parse_json, write_json

RUN_JSON, CONFIG_JSON, LAST, BEST = "run.json", "config.json", "last.pt", "best.safetensors"
PUBLISHED = "model.safetensors"  # the weights of a folder zoo publish wrote
LOCK_NAME = ".zoo-train.lock"
_MAX_JSON = 64 << 20  # a run's records are kilobytes; a larger file is not one of them
_HINT = "restore it, or give another run folder"
CHOSE_EPOCH = "validation (selected the kept epoch)"  # what held-out images that chose a run's weights are called
FLATTERS = "these images chose the kept epoch, so the score flatters the weights"
# A run writes its run.json before any other file; until then its folder holds its lock and that file's temporary.
_RUN_TEMP = re.compile(r"^\.run\.json\.\d+\.\d+\.(tmp|part)$")
# Keys every run.json zoo writes holds (zoo.training.trainer), with a recipe holding these of its settings.
RUN_KEYS = frozenset({"status", "error", "architecture", "model_args", "recipe", "epochs_done", "torch", "updated"})
_RECIPE_KEYS = frozenset({"name", "epochs", "batch_size", "opt", "lr", "sched", "seed"})


def _maybe(check: Any, name: str, value: Any, *args: Any) -> Any:
    return value if value is None else check(name, value, *args)


def _texts(name: str, value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise checks.Invalid(name, value, "must be a list of strings")
    return value


@dataclass
class RunConfig:
    """config.json: how to rebuild a run's model (architecture, builder arguments, classes, preprocessing)."""

    architecture: str
    model_args: dict[str, Any] = field(default_factory=dict)
    num_classes: int | None = None
    num_features: int | None = None
    label_names: list[str] | None = None
    pretrained_cfg: dict[str, Any] = field(default_factory=dict)
    weights: str = BEST

    def __post_init__(self) -> None:
        checks.text("architecture", self.architecture, 200)
        checks.json_object("model_args", self.model_args)
        _maybe(checks.int_in, "num_classes", self.num_classes, 0, checks.MAX_NUM_CLASSES)
        _maybe(checks.int_in, "num_features", self.num_features, 0)
        _maybe(_texts, "label_names", self.label_names)
        checks.json_object("pretrained_cfg", self.pretrained_cfg)
        _maybe(checks.input_size, "pretrained_cfg.input_size", self.pretrained_cfg.get("input_size"))
        checks.relative_path("weights", self.weights)


@dataclass
class RunRecord:
    """run.json: the facts zoo reads back (what the run trained on, its recipe, how it went)."""

    dataset: str | None = None
    dataset_kind: str | None = None
    data_dir: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    val_split: float | None = None
    val_images: int | None = None
    test_images: int | None = None
    selection: str | None = None
    command: str | None = None
    zoo_command: str | None = None
    resumed_with: list[str] = field(default_factory=list)
    model_args: dict[str, Any] = field(default_factory=dict)
    data_identity: dict[str, Any] = field(default_factory=dict)
    recipe: dict[str, Any] | None = None
    device: str | None = None
    precision: str | None = None
    torch: str | None = None
    epochs_done: int | None = None
    best_epoch: int | None = None
    best_metric: float | None = None
    best_metric_name: str | None = None
    schedule_changes: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        for name in ("dataset", "dataset_kind", "data_dir", "selection", "device", "precision", "torch"):
            _maybe(checks.text, name, getattr(self, name))
        for name in ("command", "zoo_command"):
            _maybe(checks.text, name, getattr(self, name), 1 << 16)
        for name, low in (("seed", None), ("val_images", 0), ("test_images", 0), ("epochs_done", 0), ("best_epoch", 1)):
            _maybe(checks.int_in, name, getattr(self, name), low)
        for name in ("data", "model_args", "data_identity"):
            checks.json_object(name, getattr(self, name))
        for key, value in self.data_identity.items():
            _maybe(checks.json_object, f"data_identity.{key}", value)
        _maybe(checks.json_object, "recipe", self.recipe)
        _maybe(checks.number_in, "val_split", self.val_split, 0, 1)
        _maybe(checks.number_in, "best_metric", self.best_metric)
        _maybe(checks.one_of, "best_metric_name", self.best_metric_name, ("val_acc1", "last_epoch"))
        _texts("resumed_with", self.resumed_with)
        if not isinstance(self.schedule_changes, list):
            raise checks.Invalid("schedule_changes", self.schedule_changes, "must be a list")


def images_called(run: RunRecord | None, held_out: bool, name: str) -> str:
    """What to call the images a run's weights are scored on (``held_out``: the run's own held-out images):
    :data:`CHOSE_EPOCH` where they chose its kept epoch, never a test set; otherwise ``name``."""
    return CHOSE_EPOCH if run and held_out and run.best_metric_name == "val_acc1" else name


def _read(cls: Any, path: Path) -> Any:
    """The ``cls`` record in the JSON file ``path`` (of run.json, the fields zoo reads); a wrong value is a RunError
    naming the file and the field."""
    with checks.reported(str(path), RunError, _HINT):
        data = checks.read_bounded(path, _MAX_JSON, path.name)
    try:
        data = parse_json(data)
    except ValueError as e:  # not UTF-8, not JSON, nested too deeply
        raise RunError(f"{path} is not valid JSON ({shorten(str(e).splitlines()[0], 200)})", hint=_HINT) from None
    if cls is RunRecord and isinstance(data, dict):  # zoo.fit's run_info may add facts zoo does not read
        data = {k: v for k, v in data.items() if k in {f.name for f in fields(RunRecord)}}
    return checks.record(cls, data, str(path), RunError, _HINT)


def read_config(folder: str | os.PathLike[str]) -> RunConfig:
    """A run's config.json, checked."""
    return _read(RunConfig, Path(folder) / CONFIG_JSON)


def read_run(folder: str | os.PathLike[str]) -> RunRecord:
    """A run's run.json, checked."""
    return _read(RunRecord, Path(folder) / RUN_JSON)


def write_run(folder: str | os.PathLike[str], data: dict[str, Any], final: bool = False) -> None:
    """Write a run's run.json; a ``final`` record lands even on a full disk (overwriting the file in place)."""
    path = Path(folder) / RUN_JSON
    try:
        write_json(data, path)
    except OSError:
        if not final:
            raise
        try:  # no room for a temporary file: the old file's blocks are reused
            with open(path, "r+" if path.exists() else "w") as f:
                f.truncate(0)
                f.write(json.dumps(data, indent=2, default=json_default) + "\n")
        except OSError as e:
            warnings.warn(f"could not record the run's end ({data.get('status')}) in {path}: {e}", stacklevel=3)


def json_of(path: str | os.PathLike[str], keys: frozenset[str]) -> dict[str, Any] | None:
    """The JSON object in the regular file ``path`` when it holds ``keys`` (a file of zoo's, known by its content);
    None when it is unreadable, too large, not JSON or another object."""
    try:
        data = parse_json(checks.read_bounded(path, _MAX_JSON))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.keys() >= keys else None


def is_run_folder(folder: str | os.PathLike[str]) -> bool:
    """Whether ``folder`` holds a training run of zoo's, known by its content: a run.json as zoo writes it (and a
    config.json, if any, too), or only the lock and temporary run.json of a run killed before writing it."""
    try:
        names = os.listdir(folder)
        if RUN_JSON not in names:
            return bool(names) and all(n == LOCK_NAME or _RUN_TEMP.match(n) for n in names)
        data = json_of(Path(folder) / RUN_JSON, RUN_KEYS)
        if data is None or not isinstance(data["recipe"], dict) or not data["recipe"].keys() >= _RECIPE_KEYS:
            return False
        read_run(folder)
        if CONFIG_JSON in names:
            read_config(folder)
    except (OSError, RunError):  # unreadable, or not what zoo writes: nobody's run
        return False
    return True


def resume_point(resume: str | os.PathLike[str]) -> Path:
    """The ``last.pt`` to resume from: in the run folder ``resume``, or the file itself."""
    path = Path(resume)
    path = path / LAST if path.is_dir() else path
    if not path.is_file():
        raise FileNotFoundError(f"nothing to resume: {path} does not exist")
    return path


def weights_file(checkpoint: str | os.PathLike[str]) -> Path:
    """The weights of ``checkpoint``: the file itself, or a run's best.safetensors or a published model.safetensors."""
    path = Path(checkpoint)
    if not path.is_dir():
        if not path.exists():
            raise FileNotFoundError(f"checkpoint {path} does not exist")
        return path
    for name in (BEST, PUBLISHED):
        if (path / name).is_file():
            return path / name
    raise WeightsFileError(
        f"{path} is a folder without {BEST} (a `zoo train` run) or {PUBLISHED} (a published folder)",
        hint="give the weights file itself, or a run folder",
    )


def model_arch(model: nn.Module) -> str:
    """The registered architecture of a zoo model (its class name for any other model)."""
    return (getattr(model, "pretrained_cfg", None) or {}).get("architecture") or type(model).__name__


def refuse_tag_with_checkpoint(model_name: str | None, checkpoint: Any, command: str, instead: str) -> None:
    """``arch.tag`` names published weights and ``--checkpoint`` other ones: given both, which weights were used
    would be a guess (``zoo predict``, ``zoo eval``). ``instead`` is the other way out the hint offers."""
    if not checkpoint or model_name is None:
        return
    arch, tag = split_model_name_tag(model_name)
    if tag:
        raise ArgumentValueError(
            f"{model_name!r} names published weights and --checkpoint {checkpoint} names other weights",
            hint=f"give the architecture with --checkpoint (`zoo {command} {arch} --checkpoint {checkpoint} ...`), "
            f"or {instead}",
        )


def load_model(
    checkpoint: str | os.PathLike[str], arch: str | None = None, config: RunConfig | None = None, **defaults: Any
) -> nn.Module:
    """The model ``checkpoint`` holds (:func:`weights_file`), built as it was trained: from the header zoo wrote into
    a safetensors file, else from the run's ``config`` (default: the config.json beside it), else ``defaults``."""
    path = weights_file(checkpoint)
    meta = WeightsMetadata.read(path) if path.suffix == ".safetensors" else None
    described = meta is not None and (meta.model_args is not None or meta.pretrained_cfg is not None)
    if not described and config is None and (path.parent / CONFIG_JSON).is_file():
        config = read_config(path.parent)
    recorded = (meta.architecture if meta else None) or (config.architecture if config else None)
    if arch and recorded and arch != recorded:
        # Building one architecture and loading another's tensors would fail with a long listing of keys.
        raise WeightsFileError(f"{path} was trained as {recorded!r}, not {arch!r}", hint=f"name {recorded}, or none")
    arch = arch or recorded
    if not arch:
        raise WeightsFileError(f"{path} does not record its architecture", hint="name the architecture it holds")
    if described:
        check_model_args(arch, meta.model_args or {}, path)  # type: ignore[union-attr]
        return create_model(arch, checkpoint_path=str(path))
    if config is not None:
        check_model_args(arch, config.model_args, path.parent / CONFIG_JSON)
    kwargs = config.model_args if config else defaults
    model = create_model(arch, **kwargs)
    state = load_file(path) if meta is not None else read_pickle_checkpoint(path, prefer_ema=True)
    broken = [k for k, t in state.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if broken:  # a diverged run's weights would be scored at chance: say what is wrong instead
        raise WeightsFileError(
            f"{path} holds NaN or infinite values in {', '.join(broken[:5])}",
            hint="the run diverged before this checkpoint; use an earlier one",
        )
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).splitlines()[0]
        raise WeightsFileError(
            f"{path} does not fit {arch} built with {kwargs}: {first}", hint="name the architecture it was saved from"
        ) from None
    if config:
        labels = {"label_names": tuple(config.label_names)} if config.label_names else {}
        model.pretrained_cfg = {**model.pretrained_cfg, **config.pretrained_cfg, **labels}
        label_names(model, str(path.parent / CONFIG_JSON))  # one name per output, or the file is refused
    return model


def label_names(model: nn.Module, where: str = "the weights") -> list[str]:
    """The class names of ``model``'s outputs (its ``pretrained_cfg``'s, else the class numbers); names that do not
    count its outputs are a WeightsFileError naming ``where``."""
    names = model.pretrained_cfg.get("label_names")
    if not names:
        return [str(i) for i in range(model.num_classes)]
    if len(names) != model.num_classes:
        raise WeightsFileError(
            f"{where}: label_names holds {len(names)} names, but the model predicts {model.num_classes} classes",
            hint="fix label_names (one name per class), or remove them to get class numbers",
        )
    return [str(n) for n in names]


def printable(text: str) -> str:
    """``text`` as it may be printed: escaped (``repr``) when it holds a control character, so that a name from a
    file can neither retitle a terminal (an ANSI escape) nor forge an output line (a newline)."""
    return text if text.isprintable() else repr(text)
