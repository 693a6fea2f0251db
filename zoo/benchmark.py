"""Model benchmarks (``zoo bench``): inference and training-step throughput, MACs, parameters and peak memory.

Like timm's ``benchmark.py``: build the model, run a few warm-up steps, then time each step separately and
report the median, so that one slow step (a page fault, another process) does not move the result. MACs come
from PyTorch's own ``torch.utils.flop_counter`` (one multiply-add counts as two FLOPs there).
"""

from __future__ import annotations

import contextlib
import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from zoo.errors import ArgumentValueError

__all__ = [
    "DTYPES", "RUNTIMES", "BenchResult", "benchmark_model", "check_bench_size", "count_macs", "device_memory_bytes",
    "peak_memory_mb",
]  # fmt: skip

DTYPES = ("fp32", "bf16", "fp16")
RUNTIMES = ("eager", "onnxruntime")


@dataclass
class BenchResult:
    """One benchmark: what was measured, on what, and the medians."""

    model: str
    device: str
    runtime: str
    batch_size: int
    input_size: tuple[int, int, int]
    dtype: str
    channels_last: bool
    compiled: bool
    params: int
    gmacs: float  # per sample, at input_size
    infer_samples_per_s: float | None = None
    infer_step_ms: float | None = None
    train_samples_per_s: float | None = None
    train_step_ms: float | None = None
    peak_memory_mb: float | None = None
    steps: int = 0
    torch_version: str = field(default_factory=lambda: torch.__version__)

    def as_dict(self) -> dict[str, Any]:
        """The result as plain values (for CSV and JSON)."""
        out = asdict(self)
        out["input_size"] = "x".join(map(str, self.input_size))
        return out


def count_macs(model: nn.Module, example: torch.Tensor) -> float:
    """Multiply-accumulate operations of one forward pass of ``example`` (all samples together)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), counter:
            model(example)
    finally:
        model.train(was_training)
    return counter.get_total_flops() / 2


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory: the CUDA allocator's high-water mark, or on CPU the process's peak resident set size."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        import resource
    except ImportError:  # Windows
        return float("nan")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024


def _ram_bytes() -> int | None:
    """This machine's memory in bytes, or a container's smaller cgroup limit; None where neither can be read."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows) or no such name
        total = None
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(limit_file).read_text().strip()
        except OSError:
            continue
        if text.isdigit():  # "max" (or a huge number) means no limit
            total = int(text) if total is None else min(total, int(text))
        break
    return total


def device_memory_bytes(device: torch.device) -> int | None:
    """Memory the benchmark's tensors can live in on ``device``, in bytes (None where it cannot be told).

    The input batch is made in CPU memory first, so a GPU's memory counts only up to the machine's; an Apple
    GPU shares the machine's memory.
    """
    ram = _ram_bytes()
    if device.type == "cuda" and torch.cuda.is_available():
        gpu = torch.cuda.get_device_properties(device).total_memory
        return gpu if ram is None else min(gpu, ram)
    return ram


def check_bench_size(batch_size: int, size: tuple[int, int, int], device: torch.device) -> None:
    """Refuse an input no benchmark could take, before anything is allocated.

    Sides and channels are bounded as a model's pretrained config is (``MAX_INPUT_SIDE``, ``MAX_CHANNELS``),
    and a batch whose float32 input alone cannot be held twice (``torch.randn``, then its device or
    channels-last copy) in the device's memory is refused: otherwise the allocator fails with a RuntimeError
    traceback, or the kernel kills the process, only after the model was built and its MACs counted.
    """
    from zoo.utils.checks import input_size

    c, h, w = input_size("input_size", size)
    needed = 2 * batch_size * c * h * w * 4  # bytes: two float32 copies of the input batch
    memory = device_memory_bytes(device)
    if memory is not None and needed > memory:
        fits = memory // (2 * c * h * w * 4)
        raise ArgumentValueError(
            f"batch_size={batch_size} of {c}x{h}x{w} inputs needs {needed / 2**30:,.1f} GiB for its two float32 "
            f"copies alone, and the {device.type} has {memory / 2**30:,.1f} GiB",
            hint=f"give a batch size of at most {fits:,} (fewer still, for the activations) or a smaller input"
            if fits
            else "give a smaller input size",
        )


def _autocast(device: torch.device, dtype: str) -> contextlib.AbstractContextManager:
    if dtype == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if dtype == "bf16" else torch.float16)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed_steps(step: Callable[[], None], warmup: int, steps: int, device: torch.device) -> list[float]:
    for _ in range(warmup):
        step()
    _sync(device)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return times


@contextlib.contextmanager
def _train_mode(model: nn.Module) -> Iterator[None]:
    was_training = model.training
    model.train()
    try:
        yield
    finally:
        model.train(was_training)


def benchmark_model(
    model_name: str,
    *,
    batch_size: int = 32,
    input_size: tuple[int, int, int] | None = None,
    device: str = "cpu",
    dtype: str = "fp32",
    channels_last: bool = True,
    compile_mode: str | None = None,
    warmup: int = 3,
    steps: int = 10,
    inference: bool = True,
    train: bool = True,
    model_kwargs: dict[str, Any] | None = None,
    runtime: str = "eager",
    threads: int | None = None,
) -> BenchResult:
    """Benchmark ``model_name`` (built with ``model_kwargs``, random weights) on random data.

    ``compile_mode`` runs ``torch.compile(model, mode=compile_mode)`` ("default" for its default mode).
    Training steps use SGD with momentum and cross-entropy on random labels, like timm's benchmark.
    ``runtime="onnxruntime"`` times inference of the model exported to ONNX (at this batch size) in an ONNX
    Runtime CPU session with ``threads`` intra-op threads (torch's thread count when None, so that the two
    runtimes compare on the same cores): float32, no compile, no training.
    """
    from zoo.factory import create_model

    if dtype not in DTYPES:
        raise ArgumentValueError(f"dtype={dtype!r} is not supported; choose one of {', '.join(DTYPES)}")
    if runtime not in RUNTIMES:
        raise ArgumentValueError(f"runtime={runtime!r} is not supported; choose one of {', '.join(RUNTIMES)}")
    dev = torch.device(device)
    if runtime == "onnxruntime":
        problems = [what for what, bad in (("a CPU device", dev.type != "cpu"), ("dtype fp32", dtype != "fp32"),
                                           ("no compile", compile_mode), ("inference only", train)) if bad]  # fmt: skip
        if problems:
            raise ArgumentValueError(f"runtime onnxruntime needs {', '.join(problems)} (it runs the float32 ONNX "
                                     "export on the CPU; --mode inference)")  # fmt: skip
        channels_last = False  # an ONNX graph takes NCHW
    if dtype == "fp16" and dev.type != "cuda":
        raise ArgumentValueError("dtype fp16 needs a CUDA device; use bf16 on the CPU")
    if batch_size < 1 or warmup < 0 or steps < 1:
        raise ArgumentValueError(f"batch_size ({batch_size}) and steps ({steps}) must be >= 1, warmup ({warmup}) >= 0")
    if not (inference or train):
        raise ArgumentValueError("nothing to measure: enable inference, training or both")
    model = create_model(model_name, **(model_kwargs or {}))
    size = tuple(input_size) if input_size else tuple(model.pretrained_cfg["input_size"])
    if len(size) != 3 or any(not isinstance(v, int) or v < 1 for v in size):
        raise ArgumentValueError(f"input_size={size!r} is invalid: give three positive ints, channels height width")
    check_bench_size(batch_size, size, dev)  # type: ignore[arg-type]
    params = sum(p.numel() for p in model.parameters())
    macs = count_macs(model, torch.zeros(1, *size))
    memory = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(dev, memory_format=memory)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    runner: nn.Module = torch.compile(model, mode=None if compile_mode == "default" else compile_mode) if (
        compile_mode
    ) else model  # fmt: skip
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch_size, *size, generator=g).to(dev).contiguous(memory_format=memory)
    result = BenchResult(
        model_name, str(dev), runtime, batch_size, size, dtype, channels_last, compile_mode is not None, params,
        macs / 1e9, steps=steps,
    )  # fmt: skip
    if inference:
        model.eval()

        def infer() -> None:
            with torch.inference_mode(), _autocast(dev, dtype):
                runner(x)

        if runtime == "onnxruntime":
            from zoo.export import onnx_runner

            infer = onnx_runner(model, x, threads or torch.get_num_threads())  # type: ignore[assignment]

        times = _timed_steps(infer, warmup, steps, dev)
        median = statistics.median(times)
        result.infer_step_ms, result.infer_samples_per_s = median * 1e3, batch_size / median
    if train:
        num_classes = getattr(model, "num_classes", 0)
        y = torch.randint(0, max(num_classes, 1), (batch_size,), generator=g).to(dev)
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
        criterion = nn.CrossEntropyLoss()
        scaler = torch.amp.GradScaler("cuda", enabled=dtype == "fp16")

        def train_step() -> None:
            optimizer.zero_grad(set_to_none=True)
            with _autocast(dev, dtype):
                out = runner(x)
                # A model without classifier (num_classes=0) returns features: any scalar of them trains it.
                loss = criterion(out, y) if num_classes else out.float().mean()
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()

        with _train_mode(model):
            times = _timed_steps(train_step, warmup, steps, dev)
        median = statistics.median(times)
        result.train_step_ms, result.train_samples_per_s = median * 1e3, batch_size / median
    peak = peak_memory_mb(dev)
    result.peak_memory_mb = None if math.isnan(peak) else peak
    return result
