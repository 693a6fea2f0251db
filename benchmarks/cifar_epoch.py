"""Where a resnet20 CIFAR-10 epoch spends its time on this CPU, and what each speed setting is worth.

    python benchmarks/cifar_epoch.py            # 10,000 real training images per epoch, 2 rounds (about 6 minutes)
    python benchmarks/cifar_epoch.py --quick    # 512 images, 1 round, no compile: checks that the script runs

Two tables, one run, nothing else on the machine (two torch threads that share their cores with any other
work slow down several times, so compare the ratios of one run):

- ``parts``: the median milliseconds of one batch of 128 for each piece of a training step and of the
  per-epoch evaluation: the batch augmentation (crop with 4-pixel padding and flips on uint8, normalise),
  forward + backward in float32 NCHW, float32 channels_last and bf16 autocast channels_last, timm's
  SGD-Nesterov step, the EMA update (timm's ``ModelEmaV3``), and the evaluation of a batch in float32 and bf16.
- ``epochs``: img/s of whole epochs. The plain PyTorch loop (textbook float32 NCHW; channels_last; bf16
  autocast; bf16 with ``torch.compile`` of the model, compile time excluded; bf16 on one thread) beside
  ``zoo.training.fit`` with the bundled weights' recipe (crop, flips, label smoothing, EMA, SGD-Nesterov,
  cosine per batch), before (float32 channels_last, the CPU default until bf16 autocast) and after (bf16).

Real data: the original CIFAR-10 batches in ``--data-dir`` (default ``../shared/data/CIFAR10``), else random
images of the same shape (the timing does not depend on the pixels).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_info, print_machine, results_name, write_results  # noqa: E402

BATCH = 128


def _images(data_dir: Path, n: int) -> tuple[Any, str]:
    from zoo.data import KINDS, TensorImageDataset

    mean, std = KINDS["cifar10"].mean, KINDS["cifar10"].std
    if (data_dir / "cifar-10-batches-py" / "data_batch_1").is_file():
        from zoo.data import create_datasets

        train, _, _ = create_datasets("cifar10", str(data_dir), splits=("train",))
        return train.subset(torch.arange(n)), "original CIFAR-10 training images"
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    targets = torch.randint(0, 10, (n,), generator=g)
    return TensorImageDataset(images, targets, [str(i) for i in range(10)], mean, std), "random images"


def _median_ms(fn: Any, repeats: int) -> float:
    fn()  # warm-up: oneDNN picks and caches its kernels on the first call
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1e3 * statistics.median(times)


def _model(channels_last: bool) -> nn.Module:
    import zoo

    torch.manual_seed(0)
    model = zoo.create_model("resnet20")
    return model.to(memory_format=torch.channels_last) if channels_last else model


def parts(dataset: Any, repeats: int) -> list[dict[str, Any]]:
    """Milliseconds per batch of 128 for each piece of a step and of the evaluation."""
    from timm.optim import create_optimizer_v2
    from timm.utils import ModelEmaV3

    from zoo.data import TensorLoader

    rows = []
    loader = TensorLoader(dataset, BATCH, shuffle=True, shift=4, hflip=0.5, seed=0)
    batches = iter(loader)

    def augment() -> None:
        nonlocal batches
        try:
            next(batches)
        except StopIteration:
            batches = iter(loader)
            next(batches)

    rows.append({"part": "augmentation (crop + flip + normalise, uint8 batch)", "ms": _median_ms(augment, repeats)})
    x, y = next(iter(loader))
    criterion = nn.CrossEntropyLoss(label_smoothing=0.1)
    for label, cl, bf16 in (("float32 NCHW", False, False), ("float32 channels_last", True, False),
                            ("bf16 autocast channels_last", True, True)):  # fmt: skip
        model = _model(cl)
        xi = x.contiguous(memory_format=torch.channels_last) if cl else x

        def step(model: nn.Module = model, xi: torch.Tensor = xi, bf16: bool = bf16) -> None:
            with torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext():
                loss = criterion(model(xi), y)
            model.zero_grad(set_to_none=True)
            loss.backward()

        rows.append({"part": f"forward + backward, {label}", "ms": _median_ms(step, repeats)})
    model = _model(True)
    optimizer = create_optimizer_v2(model, opt="sgd", lr=0.1, weight_decay=5e-4, momentum=0.9)
    criterion(model(x.contiguous(memory_format=torch.channels_last)), y).backward()
    rows.append({"part": "optimizer step (timm SGD-Nesterov)", "ms": _median_ms(optimizer.step, repeats)})
    ema = ModelEmaV3(model, decay=0.999, use_warmup=True)
    rows.append(
        {"part": "EMA update (timm ModelEmaV3)", "ms": _median_ms(lambda: ema.update(model, step=100), repeats)}
    )
    model.eval()
    xe = x.contiguous(memory_format=torch.channels_last)
    for label, bf16 in (("float32", False), ("bf16 autocast", True)):

        def infer(bf16: bool = bf16) -> None:
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext():
                model(xe)

        rows.append({"part": f"evaluation of a batch, {label}", "ms": _median_ms(infer, repeats)})
    for r in rows:
        r["ms"] = round(r["ms"], 2)
    return rows


def plain_epoch(dataset: Any, channels_last: bool, bf16: bool, compiled: bool = False) -> float:
    """One epoch of the textbook loop (crop and flip as zoo's loader does them); img/s."""
    from timm.optim import create_optimizer_v2

    from zoo.data import TensorLoader

    model = _model(channels_last)
    optimizer = create_optimizer_v2(model, opt="sgd", lr=0.1, weight_decay=5e-4, momentum=0.9)
    criterion = nn.CrossEntropyLoss(label_smoothing=0.1)
    forward = torch.compile(model) if compiled else model
    loader = TensorLoader(dataset, BATCH, shuffle=True, shift=4, hflip=0.5, seed=0)
    if compiled:  # compile before the clock starts: its one-time cost is not an epoch's
        x, y = next(iter(loader))
        with torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext():
            criterion(forward(x.contiguous(memory_format=torch.channels_last)), y).backward()
    model.train()
    t0 = time.perf_counter()
    seen = 0
    for x, y in loader:
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext():
            loss = criterion(forward(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        seen += len(y)
    return seen / (time.perf_counter() - t0)


def zoo_epoch(dataset: Any, amp: bool) -> float:
    """One epoch of ``zoo.training.fit`` with the bundled resnet20.cifar10 weights' recipe; img/s."""
    from zoo.training import fit
    from zoo.training.recipes import get_recipe

    recipe = get_recipe("fast", "cifar10").replace(epochs=1, batch_size=BATCH, lr=0.1, rand_augment="", amp=amp)
    return fit(_model(True), dataset, None, recipe, None, progress=False).history[-1]["img_per_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data" / "CIFAR10")
    parser.add_argument("--images", type=int, default=10_000, help="training images per epoch")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="512 images, 1 round, 3 repeats")
    parser.add_argument("--out", type=Path, help="results folder (default benchmarks/results)")
    args = parser.parse_args()
    repeats = 20
    if args.quick:
        args.images, args.rounds, repeats = 512, 1, 3
    info = machine_info()
    from zoo.training.components import cpu_has_native_bf16

    info["native_bf16"] = cpu_has_native_bf16()
    print_machine(info)
    dataset, what = _images(args.data_dir, args.images)
    print(f"data: {len(dataset)} {what}; batch {BATCH}; native bf16: {info['native_bf16']}")
    part_rows = parts(dataset, repeats)
    for r in part_rows:
        print(f"  {r['part']:<56} {r['ms']:8.2f} ms/batch")
    threads = torch.get_num_threads()
    configs = {
        "plain loop, float32 NCHW (textbook)": lambda: plain_epoch(dataset, False, False),
        "plain loop, float32 channels_last": lambda: plain_epoch(dataset, True, False),
        "plain loop, bf16 autocast channels_last": lambda: plain_epoch(dataset, True, True),
        "plain loop, bf16 channels_last, torch.compile": lambda: plain_epoch(dataset, True, True, compiled=True),
        "zoo fit, before: float32 channels_last": lambda: zoo_epoch(dataset, amp=False),
        "zoo fit, after: bf16 autocast channels_last": lambda: zoo_epoch(dataset, amp=True),
    }
    if args.quick:  # compiling costs about 40 s here, more than the rest of the quick run
        del configs["plain loop, bf16 channels_last, torch.compile"]
    if threads > 1:

        def one_thread() -> float:
            torch.set_num_threads(1)
            try:
                return plain_epoch(dataset, True, True)
            finally:
                torch.set_num_threads(threads)

        configs["plain loop, bf16 channels_last, 1 thread"] = one_thread
    speeds: dict[str, list[float]] = {k: [] for k in configs}
    for i in range(args.rounds):
        order = list(configs) if i % 2 == 0 else list(reversed(configs))  # neither end always runs first
        for name in order:
            speeds[name].append(configs[name]())
    textbook = statistics.median(speeds["plain loop, float32 NCHW (textbook)"])
    epoch_rows = []
    for name, values in speeds.items():
        ips = statistics.median(values)
        epoch_rows.append({"setting": name, "img_s": round(ips, 1), "vs_textbook": round(ips / textbook, 3),
                           "epoch_s_50k": round(50_000 / ips, 1), "images": len(dataset),
                           "rounds": args.rounds})  # fmt: skip
        print(f"  {name:<50} {ips:8.1f} img/s  {ips / textbook:5.2f}x textbook  "
              f"({50_000 / ips:6.1f} s per 50,000 images)")  # fmt: skip
    rows = [{"table": "parts", "what": r["part"], "ms_per_batch": r["ms"], "img_s": "", "vs_textbook": "",
             "epoch_s_50k": "", "images": len(dataset), "rounds": repeats} for r in part_rows]  # fmt: skip
    rows += [{"table": "epochs", "what": r["setting"], "ms_per_batch": round(1e3 * BATCH / r["img_s"], 2),
              "img_s": r["img_s"], "vs_textbook": r["vs_textbook"], "epoch_s_50k": r["epoch_s_50k"],
              "images": r["images"], "rounds": r["rounds"]} for r in epoch_rows]  # fmt: skip
    info["data"] = what
    path = write_results(results_name("cifar_epoch", torch.device("cpu"), quick=args.quick), rows, info, args.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
