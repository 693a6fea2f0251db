"""A training run's folder: its files, the typed records of its run.json and config.json, and the one loader
that turns a checkpoint (a run, a published folder or a weights file) into a model.

A run folder holds ``run.json`` (what it trained on, its recipe and how it went), ``config.json`` (how to
rebuild its model), ``last.pt`` (the resume point) and ``best.safetensors`` (the kept weights).
"""

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
from zoo.registry import split_model_name_tag
from zoo.utils import checks, shorten
from zoo.utils.files import json_default, parse_json, write_json

RUN_JSON, CONFIG_JSON, LAST, BEST = "run.json", "config.json", "last.pt", "best.safetensors"
PUBLISHED = "model.safetensors"  # the weights of a folder zoo publish wrote
LOCK_NAME = ".zoo-train.lock"
_MAX_JSON = 64 << 20  # a run's records are kilobytes; a larger file is not one of them
_HINT = "restore it, or give another run folder"
# A run writes its run.json before any other file; until then its folder holds its lock and that file's temporary.
_RUN_TEMP = re.compile(r"^\.run\.json\.\d+\.\d+\.(tmp|part)$")


def _maybe(check: Any, name: str, value: Any, *args: Any) -> Any:
    return value if value is None else check(name, value, *args)


def _texts(name: str, value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise checks.Invalid(name, value, "must be a list of strings")
    return value


def _list(name: str, value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise checks.Invalid(name, value, "must be a list")
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
    """run.json: the facts zoo reads back (what the run trained on, its recipe, how it went); zoo.fit's
    ``run_info`` may add others, which are not read."""

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
        _maybe(checks.text, "dataset", self.dataset)
        _maybe(checks.text, "dataset_kind", self.dataset_kind)
        _maybe(checks.text, "data_dir", self.data_dir)
        checks.json_object("data", self.data)
        _maybe(checks.int_in, "seed", self.seed)
        _maybe(checks.number_in, "val_split", self.val_split, 0, 1)
        _maybe(checks.int_in, "val_images", self.val_images, 0)
        _maybe(checks.int_in, "test_images", self.test_images, 0)
        _maybe(checks.text, "selection", self.selection)
        _maybe(checks.text, "command", self.command, 1 << 16)
        _maybe(checks.text, "zoo_command", self.zoo_command, 1 << 16)
        _texts("resumed_with", self.resumed_with)
        checks.json_object("model_args", self.model_args)
        for key, value in checks.json_object("data_identity", self.data_identity).items():
            _maybe(checks.json_object, f"data_identity.{key}", value)
        _maybe(checks.json_object, "recipe", self.recipe)
        _maybe(checks.text, "device", self.device)
        _maybe(checks.text, "precision", self.precision)
        _maybe(checks.text, "torch", self.torch)
        _maybe(checks.int_in, "epochs_done", self.epochs_done, 0)
        _maybe(checks.int_in, "best_epoch", self.best_epoch, 1)
        _maybe(checks.number_in, "best_metric", self.best_metric)
        _maybe(checks.one_of, "best_metric_name", self.best_metric_name, ("val_acc1", "last_epoch"))
        _list("schedule_changes", self.schedule_changes)


def _read_json(path: Path) -> Any:
    with checks.reported(str(path), RunError, _HINT):
        data = checks.read_bounded(path, _MAX_JSON, path.name)
    try:
        return parse_json(data)
    except ValueError as e:  # not UTF-8, not JSON, nested too deeply
        raise RunError(f"{path} is not valid JSON ({shorten(str(e).splitlines()[0], 200)})", hint=_HINT) from None


def _record(cls: Any, data: Any, path: Path) -> Any:
    try:
        return checks.record(cls, data, str(path), RunError)
    except RunError as e:
        e.hint = e.hint or _HINT
        raise


def read_config(folder: str | os.PathLike[str]) -> RunConfig:
    """A run's config.json; a wrong value is a RunError naming the file and the field."""
    path = Path(folder) / CONFIG_JSON
    return _record(RunConfig, _read_json(path), path)


def read_run(folder: str | os.PathLike[str]) -> RunRecord:
    """A run's run.json; a wrong value is a RunError naming the file and the field."""
    path = Path(folder) / RUN_JSON
    data = _read_json(path)
    if isinstance(data, dict):
        names = {f.name for f in fields(RunRecord)}
        data = {k: v for k, v in data.items() if k in names}
    return _record(RunRecord, data, path)


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


def is_run_folder(folder: str | os.PathLike[str]) -> bool:
    """Whether ``folder`` holds a training run of zoo's: its run.json says so, or the run was killed before writing
    it (nothing but its lock and a temporary run.json). Files named like a run's do not make one."""
    try:
        names = os.listdir(folder)
        data = parse_json(checks.read_bounded(Path(folder) / RUN_JSON, _MAX_JSON)) if RUN_JSON in names else None
    except (OSError, ValueError):  # unreadable: nobody's run
        return False
    if isinstance(data, dict) and {"status", "recipe"} <= data.keys():
        return True
    return bool(names) and all(n == LOCK_NAME or _RUN_TEMP.match(n) for n in names)


def resume_point(resume: str | os.PathLike[str]) -> Path:
    """The ``last.pt`` to resume from: in the run folder ``resume``, or the file itself."""
    path = Path(resume)
    path = path / LAST if path.is_dir() else path
    if not path.is_file():
        raise FileNotFoundError(f"nothing to resume: {path} does not exist")
    return path


def weights_file(checkpoint: str | os.PathLike[str]) -> Path:
    """The weights of ``checkpoint``: the file itself, or those of a run folder (best.safetensors) or of a
    published folder (model.safetensors)."""
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
    """The model ``checkpoint`` holds (see :func:`weights_file`), built as it was trained.

    A safetensors file whose header records its model (zoo writes it) is built by ``create_model(arch,
    checkpoint_path=...)``. Any other file (a run's ``last.pt``, a bare state dict) is built with the run's
    ``config`` (default: the config.json beside it), else with ``defaults``, and must fit exactly. ``arch``
    (default: the recorded one) must be the architecture the file records.
    """
    from zoo.factory import create_model
    from zoo.pretrained.files import WeightsMetadata, load_file, read_metadata, read_pickle_checkpoint

    path = weights_file(checkpoint)
    meta = None
    if path.suffix == ".safetensors":
        header = read_metadata(path)
        try:
            meta = WeightsMetadata.from_header(header)
        except ValueError as e:  # names the header key: name the file too
            raise WeightsFileError(
                f"{path}: {e.args[0]}", hint="the file's metadata is damaged; fix or remove it"
            ) from None
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
        return create_model(arch, checkpoint_path=str(path))
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
    return model
