"""The trainer's own cost: ``zoo.training.fit`` against a plain PyTorch loop on the same work, in one process.

    python benchmarks/train_overhead.py            # resnet20 on 32x32 and mnist_cnn on 28x28, 5 rounds each
    python benchmarks/train_overhead.py --quick    # mnist_cnn, small: checks that the script runs
    python benchmarks/train_overhead.py --device cuda   # on a GPU both sides use fp16 AMP, as zoo train does

On a CPU with native bf16 (AVX512-BF16/AMX) both sides train under bf16 autocast, as zoo train does there.

Same model (same initial weights), same images already in memory (a uint8 tensor, as zoo keeps MNIST and
small folders), same optimiser (SGD with momentum, timm's create_optimizer_v2), batch size, channels_last
and no augmentation, no EMA and no validation, so that the only difference is the trainer: its loader,
bookkeeping, progress and checks. Rounds alternate between the two; the medians of img/s are compared, and
the trainer's overhead (1 - zoo / plain) should stay under 5 %.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import (  # noqa: E402
    add_device_args,
    machine_info,
    print_machine,
    resolve_device,
    results_name,
    synchronize,
    write_results,
)


def _plain_loop(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch: int, stats: tuple, lr: float
) -> float:
    """One epoch of the textbook loop (fp16 AMP with a GradScaler on CUDA, bf16 autocast on a CPU that has it,
    as zoo's trainer); returns img/s."""
    from contextlib import nullcontext

    from timm.optim import create_optimizer_v2

    from zoo.training.components import amp_dtype

    device = next(model.parameters()).device
    cuda = device.type == "cuda"
    dtype = amp_dtype(device, True)
    optimizer = create_optimizer_v2(model, opt="momentum", lr=lr, weight_decay=0.0, momentum=0.9)
    scaler = torch.amp.GradScaler("cuda", enabled=cuda)
    criterion = nn.CrossEntropyLoss()
    m = torch.tensor(stats[0], device=device).view(1, -1, 1, 1)
    s = torch.tensor(stats[1], device=device).view(1, -1, 1, 1)
    images, labels = images.to(device), labels.to(device)
    model.train()
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(0)).to(device)
    synchronize(device)
    t0 = time.perf_counter()
    seen = 0
    for i in range(0, len(order) - batch + 1, batch):
        idx = order[i : i + batch]
        x = ((images[idx].float() / 255 - m) / s).contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext():
            loss = criterion(model(x), labels[idx])
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        seen += len(idx)
    synchronize(device)
    return seen / (time.perf_counter() - t0)


def _one_epoch(which: str, name: str, state: dict, dataset: Any, recipe: Any, device: torch.device) -> float:
    """One epoch of a fresh model holding ``state``: zoo's ``fit`` or the plain loop; returns img/s."""
    import zoo
    from zoo.training import fit

    model = zoo.create_model(name)
    model.load_state_dict(state)
    model = model.to(device=device, memory_format=torch.channels_last)
    if which == "plain":
        return _plain_loop(model, dataset.images, dataset.targets, recipe.batch_size, (dataset.mean, dataset.std),
                           recipe.lr)  # fmt: skip
    return fit(model, dataset, None, recipe, None, progress=False, device=device).history[-1]["img_per_s"]


def main() -> None:
    import zoo
    from zoo.data import TensorImageDataset
    from zoo.training import Recipe

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["mnist_cnn", "resnet20"])
    parser.add_argument("--images", type=int, help="images per epoch (default: about 5 s of work per model)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="mnist_cnn, 512 images, 2 rounds")
    parser.add_argument("--out", type=Path, help="results folder (default benchmarks/results)")
    add_device_args(parser, dtype=False)
    args = parser.parse_args()
    device = resolve_device(args.device)
    if args.quick:
        args.models, args.images, args.rounds = ["mnist_cnn"], 512, 2
    info = machine_info()
    print_machine(info)
    rows = []
    g = torch.Generator().manual_seed(0)
    for name in args.models:
        base = zoo.create_model(name)
        c, h, w = base.pretrained_cfg["input_size"]
        # A 1 s epoch is at the mercy of the machine's noise: give the small model more images.
        n = args.images or (16384 if name.startswith("mnist") else 4096)
        images = torch.randint(0, 256, (n, c, h, w), dtype=torch.uint8, generator=g)
        labels = torch.randint(0, base.num_classes, (n,), generator=g)
        mean, std = base.pretrained_cfg["mean"], base.pretrained_cfg["std"]
        dataset = TensorImageDataset(images, labels, [str(i) for i in range(base.num_classes)], mean, std)
        recipe = Recipe(name="overhead", epochs=1, batch_size=args.batch_size, opt="momentum", lr=0.01, sched="none",
                        ema=False, amp=True, channels_last=True, crop_pad=0, hflip=0.0, workers=0)  # fmt: skip
        # Untimed, 4 batches each: the process's first GPU work (context, cuDNN's algorithm choice) would
        # otherwise land on whichever side runs first in round 1.
        warm = dataset.subset(torch.arange(min(n, 4 * args.batch_size)))
        for which in ("zoo", "plain"):
            _one_epoch(which, name, base.state_dict(), warm, recipe, device)
        speeds: dict[str, list[float]] = {"zoo": [], "plain": []}
        for i in range(args.rounds):
            # Alternate which goes first, so that neither always runs on a machine the other just warmed.
            for which in ("zoo", "plain") if i % 2 == 0 else ("plain", "zoo"):
                speeds[which].append(_one_epoch(which, name, base.state_dict(), dataset, recipe, device))
        zoo_ips, plain_ips = statistics.median(speeds["zoo"]), statistics.median(speeds["plain"])
        row = {"model": name, "images": n, "batch": args.batch_size, "zoo_img_s": round(zoo_ips, 1),
               "plain_img_s": round(plain_ips, 1), "overhead_pct": round(100 * (1 - zoo_ips / plain_ips), 2),
               "rounds": args.rounds}  # fmt: skip
        rows.append(row)
        print(f"{name:<10} fit {zoo_ips:8.1f} img/s  plain loop {plain_ips:8.1f} img/s  "
              f"trainer overhead {row['overhead_pct']:+.2f} %", flush=True)  # fmt: skip
    path = write_results(results_name("train_overhead", device, quick=args.quick), rows, info, args.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
