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
    """Run the block on rank 0, then on the other ranks: what rank 0 downloads, the others read. Rank 0 leaves its
    barrier even when the block fails, so the others run it and fail with their own message."""
    d = current_group()
    first = d is None or d.get_rank() == 0
    if not first:
        d.barrier()
    try:
        yield
    finally:
        if d is not None and first:
            d.barrier()


def init_distributed(device_arg: str) -> tuple[int, int, torch.device]:
    """Join the process group ``torchrun`` describes (gloo on CPU, nccl on CUDA); returns (rank, world, device)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if device_arg in ("auto", "cuda"):
        cuda = device_arg == "cuda" or torch.cuda.is_available()
        device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}" if cuda else "cpu")
    else:
        device = torch.device(device_arg)
    use_cuda = device.type == "cuda"
    if world > 1:
        import torch.distributed as dist

        if not dist.is_initialized():
            if use_cuda:
                torch.cuda.set_device(device)
            dist.init_process_group(backend="nccl" if use_cuda else "gloo")
        return dist.get_rank(), dist.get_world_size(), device
    return 0, 1, device


@contextmanager
def distributed_session(device_arg: str) -> Iterator[tuple[int, int, torch.device]]:
    """``init_distributed`` for the length of a block, then a barrier and ``destroy_process_group`` on every rank.

    The barrier keeps a rank from tearing its group down while another still writes (a one-sided teardown aborts
    the others); on an error it is skipped, since the other ranks may never reach it.
    """
    rank, world, device = init_distributed(device_arg)
    failed = False
    try:
        yield rank, world, device
    except BaseException:
        failed = True
        raise
    finally:
        d = current_group()
        if d is not None:
            if not failed:
                d.barrier()
            with suppress(Exception):
                d.destroy_process_group()
