"""Model benchmarks (``zoo bench``): inference and training throughput, MACs, parameters and peak memory.

As timm's ``benchmark.py``: warm-up steps, then each step timed on its own and the median reported, so that one
slow step does not move the result. MACs come from ``torch.utils.flop_counter`` (a multiply-add is two FLOPs).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from zoo.errors import ArgumentValueError
from zoo.utils import train_mode
from zoo.utils.checks import int_in, one_of, reported

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
        return {**asdict(self), "input_size": "x".join(map(str, self.input_size))}


def count_macs(model: nn.Module, example: torch.Tensor) -> float:
    """Multiply-accumulate operations of one forward pass of ``example`` (all samples together)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with train_mode(model, training=False), torch.no_grad(), counter:
        model(example)
    return counter.get_total_flops() / 2


def _rss() -> int:
    """This process's resident memory in bytes (0 where /proc cannot tell)."""
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


@contextlib.contextmanager
def _peak_memory(device: torch.device, result: BenchResult) -> Iterator[None]:
    """The memory the block adds at its peak: the CUDA allocator's high-water mark, or on the CPU the resident
    memory sampled every millisecond above what the process held before (the process's own high-water mark,
    ``ru_maxrss``, is the same for every model measured after the largest)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        yield
        result.peak_memory_mb = torch.cuda.max_memory_allocated(device) / 2**20
        return
    with contextlib.suppress(OSError, AttributeError):  # glibc keeps freed memory resident: give it back first
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    base, peak, done = _rss(), [0], threading.Event()

    def sample() -> None:
        while not done.wait(0.001):
            peak[0] = max(peak[0], _rss())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield
    finally:
        done.set()
        sampler.join()
    result.peak_memory_mb = (max(peak[0], _rss()) - base) / 2**20 if base else None


def device_memory_bytes(device: torch.device) -> int | None:
    """Memory the benchmark's tensors can live in on ``device``: the machine's, or a container's smaller cgroup limit
    (a GPU's counts only up to that: the input batch is made there first); None where it cannot be told."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        total = None
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        with contextlib.suppress(OSError):
            text = Path(limit_file).read_text().strip()
            if text.isdigit():  # "max" means no limit
                total = min(total or int(text), int(text))
            break
    if device.type == "cuda" and torch.cuda.is_available():
        return min(torch.cuda.get_device_properties(device).total_memory, total or 2**62)
    return total


def check_bench_size(batch_size: int, size: tuple[int, int, int], device: torch.device) -> None:
    """Refuse, before anything is allocated, an input beyond a model's limits or a batch whose float32 input alone
    cannot be held twice (``randn``, then its device copy) in the device's memory: else the allocator fails, or
    the kernel kills the process, only after the model was built."""
    from zoo.utils.checks import input_size

    c, h, w = input_size("input_size", size)
    needed, memory = 2 * batch_size * c * h * w * 4, device_memory_bytes(device)
    if memory is not None and needed > memory:
        fits = memory // (2 * c * h * w * 4)
        raise ArgumentValueError(
            f"batch_size={batch_size} of {c}x{h}x{w} inputs needs {needed / 2**30:,.1f} GiB for its two float32 "
            f"copies alone, and the {device.type} has {memory / 2**30:,.1f} GiB",
            hint=f"give a batch size of at most {fits:,} or a smaller input" if fits else "give a smaller input size",
        )


def _median_step(step: Callable[[], Any], warmup: int, steps: int, device: torch.device) -> float:
    """The median time of one ``step``, in seconds, after ``warmup`` untimed ones."""

    def run() -> float:
        t0 = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - t0

    for _ in range(warmup):
        run()
    return statistics.median(run() for _ in range(steps))


def benchmark_model(
    model_name: str,
    *,
    batch_size: int = 32,
    input_size: tuple[int, int, int] | int | None = None,
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

    ``input_size``: (C, H, W), or a side (square, the model's channels); default the model's. ``compile_mode``
    runs ``torch.compile`` ("default" for its default mode). Training steps use SGD with momentum and cross-entropy
    on random labels, as timm's benchmark. ``runtime="onnxruntime"`` times inference of the float32 ONNX export in
    an ONNX Runtime CPU session with ``threads`` intra-op threads (torch's count when None).
    """
    from zoo.factory import create_model

    dev = torch.device(device)
    with reported("zoo bench", ArgumentValueError):
        one_of("dtype", dtype, DTYPES)
        one_of("runtime", runtime, RUNTIMES)
        int_in("batch_size", batch_size, 1)
        int_in("steps", steps, 1)
        int_in("warmup", warmup, 0)
    onnx = runtime == "onnxruntime"
    if onnx and (dev.type != "cpu" or dtype != "fp32" or compile_mode or train):
        raise ArgumentValueError(
            "runtime onnxruntime runs the float32 ONNX export on the CPU, inference only",
            hint="use --mode inference --dtype fp32 on the CPU, without --compile",
        )
    if dtype == "fp16" and dev.type != "cuda":
        raise ArgumentValueError("dtype fp16 needs a CUDA device", hint="use bf16 on the CPU")
    if not (inference or train):
        raise ArgumentValueError("nothing to measure", hint="enable inference, training or both")
    cfg = dict(dtype=dtype, channels_last=channels_last and not onnx, compiled=compile_mode is not None, steps=steps)
    result = BenchResult(model_name, str(dev), runtime, batch_size, (0, 0, 0), params=0, gmacs=0.0, **cfg)
    memory = torch.channels_last if result.channels_last else torch.contiguous_format
    g = torch.Generator().manual_seed(0)
    low = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(dtype)

    def autocast() -> Any:
        return torch.autocast(dev.type, dtype=low) if low else contextlib.nullcontext()

    with _peak_memory(dev, result):  # the model, its input and its steps
        model = create_model(model_name, **(model_kwargs or {}))
        size = input_size or model.pretrained_cfg["input_size"]
        result.input_size = size = (model.in_chans, size, size) if isinstance(size, int) else tuple(size)
        check_bench_size(batch_size, size, dev)  # type: ignore[arg-type]
        result.params = sum(p.numel() for p in model.parameters())
        result.gmacs = count_macs(model, torch.zeros(1, *size)) / 1e9
        model = model.to(dev, memory_format=memory)
        runner = (
            torch.compile(model, mode=None if compile_mode == "default" else compile_mode) if compile_mode else model
        )
        x = torch.randn(batch_size, *size, generator=g).to(dev).contiguous(memory_format=memory)
        if inference:

            def infer() -> None:
                with torch.inference_mode(), autocast():
                    runner(x)

            if onnx:
                from zoo.export import onnx_runner

                infer = onnx_runner(model, x, threads or torch.get_num_threads())  # type: ignore[assignment]
            with train_mode(model, training=False):
                median = _median_step(infer, warmup, steps, dev)
            result.infer_step_ms, result.infer_samples_per_s = median * 1e3, batch_size / median
        if train:
            classes = getattr(model, "num_classes", 0)
            y = torch.randint(0, max(classes, 1), (batch_size,), generator=g).to(dev)
            optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
            scaler = torch.amp.GradScaler("cuda", enabled=dtype == "fp16")

            def train_step() -> None:
                optimizer.zero_grad(set_to_none=True)
                with autocast():
                    out = runner(x)  # a model without classifier returns features: any scalar of them trains it
                    loss = nn.functional.cross_entropy(out, y) if classes else out.float().mean()
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()

            with train_mode(model, training=True):
                median = _median_step(train_step, warmup, steps, dev)
            result.train_step_ms, result.train_samples_per_s = median * 1e3, batch_size / median
    return result
