"""Distributed training set-up and teardown (``torchrun``): one process group per run, ended on every rank."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import torch


def current_group() -> Any:
    """``torch.distributed`` when a process group is initialised, else None."""
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


def rank_world() -> tuple[int, int]:
    """This process's rank and the world size (0, 1 without a process group)."""
    d = current_group()
    return (d.get_rank(), d.get_world_size()) if d else (0, 1)


def any_rank(flag: bool, device: torch.device) -> bool:
    """True when ``flag`` is set on any rank (``flag`` itself without a process group)."""
    d = current_group()
    if d is None:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    d.all_reduce(t, op=d.ReduceOp.MAX)
    return bool(t.item())


@contextmanager
def rank_zero_first() -> Iterator[None]:
    """Run the block on rank 0, then on the other ranks (what rank 0 downloads, they read); rank 0 leaves its barrier
    even when the block fails, so that the others fail with their own message."""
    d = current_group()
    first = d is None or d.get_rank() == 0
    if not first:
        d.barrier()
    try:
        yield
    finally:
        if d is not None and first:
            d.barrier()


@contextmanager
def distributed_session(device_arg: str) -> Iterator[tuple[int, int, torch.device]]:
    """(rank, world, device) in the process group ``torchrun`` describes (gloo on CPU, nccl on CUDA), joined for the
    block; at its end a barrier (no rank ends the group while another still writes), then ``destroy_process_group``."""
    if device_arg in ("auto", "cuda"):
        cuda = device_arg == "cuda" or torch.cuda.is_available()
        device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}" if cuda else "cpu")
    else:
        device = torch.device(device_arg)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        import torch.distributed as dist

        if not dist.is_initialized():
            if device.type == "cuda":
                torch.cuda.set_device(device)
            dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    try:
        yield *rank_world(), device
        if current_group() is not None:  # reached on success only: after an error the others may never reach it
            current_group().barrier()
    finally:
        if current_group() is not None:
            with suppress(Exception):
                current_group().destroy_process_group()
