"""Small utilities every layer of zoo may use: atomic files, natural sorting and progress bars."""

from __future__ import annotations

import gc
import os
import re
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from zoo.errors import DeviceError
from zoo.utils.checks import int_in, reported
from zoo.utils.checks import shorten as shorten  # re-exported: the helpers every layer uses
from zoo.utils.files import write_json as write_json
from zoo.utils.files import write_text_atomic as write_text_atomic

_TRUE = ("1", "true", "yes", "on")


@contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection inside the block: building a model allocates thousands of objects whose
    collections also scan the ones torch made at import (2 ms of a 10 ms pretrained load). Nothing is lost."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@contextmanager
def train_mode(model: Any, training: bool) -> Iterator[None]:
    """``model`` in training (or eval) mode inside the block, then in the mode it was in."""
    was_training = model.training
    model.train(training)
    try:
        yield
    finally:
        model.train(was_training)


def env_flag(*names: str) -> bool:
    """True when any of the environment variables ``names`` is set to 1/true/yes/on (any case)."""
    return any(os.environ.get(n, "").strip().lower() in _TRUE for n in names)


def natural_key(name: str) -> list[int | str]:
    """Sort key that orders numbers by value: resnet18 < resnet34 < resnet101, as timm sorts."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name.lower())]


def progress(iterable: Iterable | None = None, **kwargs: Any) -> Any:
    """A tqdm bar, silent when stderr is not a terminal (logs, CI, subprocesses) or with ZOO_DISABLE_PROGRESS_BARS or
    HF_HUB_DISABLE_PROGRESS_BARS set."""
    from tqdm.auto import tqdm

    quiet = env_flag("ZOO_DISABLE_PROGRESS_BARS", "HF_HUB_DISABLE_PROGRESS_BARS")
    kwargs.setdefault("disable", quiet or not sys.stderr.isatty())
    kwargs.setdefault("dynamic_ncols", True)
    kwargs.setdefault("leave", False)
    return tqdm(iterable, **kwargs)


def parse_device(name: str | None) -> Any:
    """``--device``: ``auto`` (or None: CUDA when torch sees a GPU, else the CPU), ``cpu``, ``cuda``, ``cuda:N`` or
    ``mps``; anything else, or a GPU torch does not see, is a :class:`zoo.errors.DeviceError` naming what is valid."""
    import torch

    text = "auto" if name is None else str(name).strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    kind, _, index = text.partition(":")
    if kind not in ("cpu", "cuda", "mps") or (index and not index.isdigit()) or (kind != "cuda" and index):
        raise DeviceError(f"--device {name}: not a device zoo can use", hint="give auto, cpu, cuda, cuda:N or mps")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise DeviceError(f"--device {name}: torch sees no Apple GPU (MPS) here", hint="use --device cpu (or auto)")
    if kind == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise DeviceError(f"--device {name}: torch sees no GPU on this machine", hint="use --device cpu (or auto)")
        if index and int(index) >= count:
            raise DeviceError(f"--device {name}: this machine has {count} GPU(s), cuda:0 to cuda:{count - 1}",
                              hint="choose one of those")  # fmt: skip
    return torch.device(text)


def max_threads() -> int:
    """The most CPU threads ``--threads`` may ask for: four per core. torch gains nothing past one per core, and far
    beyond, thread stacks exhaust the address space: ``torch.set_num_threads(100000)`` is a segmentation fault."""
    return 4 * (os.cpu_count() or 1)


def set_threads(threads: int | None) -> None:
    """``--threads``: torch's CPU threads (None leaves torch's choice), checked before torch is asked."""
    if threads is None:
        return
    hint = f"give 1 to {os.cpu_count() or 1} (this machine's cores; {max_threads()} at most), or leave it out"
    with reported("the options", DeviceError, hint=hint):
        int_in("--threads", threads, 1, max_threads())
    import torch

    torch.set_num_threads(threads)
