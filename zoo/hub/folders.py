"""timm's names for weights outside the manifest: ``local-dir:PATH`` and ``hf-hub:ORG/NAME[@REVISION]``.

Both name a folder in timm's layout: ``config.json`` (``architecture``, ``num_classes``, ``pretrained_cfg``,
and in zoo's published folders ``model_args`` and ``label_names``) beside ``model.safetensors``. zoo's own
published folders are such folders, and so are timm's Hub repos.

Trust: ``config.json`` only chooses a registered architecture and preprocessing, each value checked as a
checkpoint header's is; it is read as JSON, never executed, and capped at 1 MiB. ``model.safetensors``
from the Hub is verified like any third-party Hub file of the manifest: against the SHA-256 the Hub
announces on the first download, then pinned on this machine (the pin is named after the repo).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zoo.errors import ArgumentValueError, WeightsError, WeightsFileError
from zoo.registry import is_model
from zoo.utils.files import parse_json

__all__ = ["FOLDER_PREFIXES", "FolderWeights", "resolve_folder"]

FOLDER_PREFIXES = ("local-dir:", "hf-hub:")
CONFIG = "config.json"
WEIGHTS = "model.safetensors"
MAX_CONFIG_BYTES = 1 << 20
_REPO_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*/[A-Za-z0-9][A-Za-z0-9_.\-]*")


@dataclass
class FolderWeights:
    """What a folder name resolves to: the architecture, its builder arguments, the preprocessing from
    ``config.json`` and (with ``pretrained``) the weights file."""

    name: str
    arch: str
    model_args: dict[str, Any] = field(default_factory=dict)
    pretrained_cfg: dict[str, Any] = field(default_factory=dict)
    weights: Path | None = None


def read_config(path: Path, what: str) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(architecture, model_args, pretrained_cfg) from a timm-layout ``config.json``, each checked."""
    from zoo.hub.metadata import check_preprocessing

    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise WeightsFileError(f"it is larger than {MAX_CONFIG_BYTES:,} bytes")
        config = parse_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise WeightsFileError(f"{what} has no {CONFIG}", hint=f"a folder in timm's layout holds {CONFIG} and "
                               f"{WEIGHTS} (what `zoo publish` writes)") from None  # fmt: skip
    except (OSError, ValueError) as e:
        raise WeightsFileError(f"{path} cannot be read as a model's config ({e})") from None
    arch = config.get("architecture") if isinstance(config, dict) else None
    if not isinstance(arch, str) or not is_model(arch):
        raise WeightsFileError(
            f"{path} names the architecture {arch!r}, which is not a zoo model", hint="`zoo list` lists them"
        )
    model_args = config.get("model_args") or {}
    cfg = dict(config.get("pretrained_cfg") or {})
    if not isinstance(model_args, dict) or not isinstance(cfg, dict):
        raise WeightsFileError(f"{path}: model_args and pretrained_cfg must be objects")
    if isinstance(config.get("num_classes"), int):
        cfg.setdefault("num_classes", config["num_classes"])
    if config.get("label_names"):
        cfg["label_names"] = config["label_names"]
    keep = ("input_size", "interpolation", "crop_pct", "crop_mode", "mean", "std", "num_classes", "label_names")
    try:
        checked = check_preprocessing({k: v for k, v in cfg.items() if k in keep})
    except ValueError as e:
        message = str(e).replace("the zoo metadata zoo.pretrained_cfg", "pretrained_cfg")
        raise WeightsFileError(f"{path}: {message}") from None
    args = {k: v for k, v in model_args.items() if k not in ("num_classes", "in_chans")}
    if checked.get("num_classes") is not None:
        args["num_classes"] = checked["num_classes"]
    if checked.get("input_size"):
        args["in_chans"] = checked["input_size"][0]
    return arch, args, checked


def _hub_parts(spec: str) -> tuple[str, str]:
    repo, _, revision = spec.partition("@")
    # The revision is checked as a manifest's Hub source checks it (Source below), but as the argument it is.
    bad_revision = revision.startswith("/") or ".." in revision.split("/")
    if not _REPO_RE.fullmatch(repo) or ".." in repo or bad_revision:
        raise ArgumentValueError(f"hf-hub:{spec}: give a Hub repo as hf-hub:ORG/NAME (optionally @REVISION)")
    return repo, revision or "main"


def _pin_name(repo: str) -> str:
    """A weights-name-shaped key for the repo's pins and lock (``arch.tag``'s characters only)."""
    return "hf_hub." + re.sub(r"[^A-Za-z0-9_\-]", "-", repo)[:110]


def resolve_folder(name: str, pretrained: bool, force: bool = False) -> FolderWeights:
    """The architecture, arguments, preprocessing and (``pretrained``) weights file a folder name stands for."""
    kind, _, spec = name.partition(":")
    if kind == "local-dir":
        folder = Path(spec).expanduser()
        if not folder.is_dir():
            raise WeightsFileError(f"{name}: {folder} is not a folder")
        arch, args, cfg = read_config(folder / CONFIG, str(folder))
        weights = folder / WEIGHTS if pretrained else None
        if weights is not None and not weights.is_file():
            raise WeightsFileError(f"{name}: {folder} has no {WEIGHTS}")
        return FolderWeights(name, arch, args, cfg, weights)
    from zoo.hub.entry import Source
    from zoo.hub.fetch import entry_lock
    from zoo.hub.sources import fetch_source, hub_small_file

    repo, revision = _hub_parts(spec)
    config_path = hub_small_file(repo, CONFIG, revision, f"{CONFIG} of {repo}", MAX_CONFIG_BYTES, force)
    arch, args, cfg = read_config(config_path, f"hf-hub:{repo}")
    weights = None
    if pretrained:
        pin = _pin_name(repo)
        source = Source(type="hub", repo_id=repo, filename=WEIGHTS, revision=revision)
        lock = entry_lock(pin)
        try:
            weights = fetch_source(pin, None, source, force)  # type: ignore[arg-type]  # a Hub source needs no entry
        except WeightsError as e:
            raise type(e)(f"hf-hub:{repo}: {e.args[0] if e.args else e}", hint=e.hint) from None
        finally:
            lock.release()
    return FolderWeights(name, arch, args, cfg, weights)
