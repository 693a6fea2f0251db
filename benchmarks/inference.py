"""CPU inference throughput of zoo's models against torchvision's identical ones, in one process.

    python benchmarks/inference.py            # resnet18, resnet50, vgg16 at batch 1 and 32
    python benchmarks/inference.py --quick    # resnet18 only, few steps: checks that the script runs
    python benchmarks/inference.py --device cuda --dtype bf16   # the same on a GPU, under autocast

Both models hold the same weights (torchvision's state_dict is loaded into zoo's model, which has the same
keys), run in eval mode under torch.inference_mode with channels_last, and are timed in alternating rounds
so that drift of the shared machine hits both alike. The ratio zoo / torchvision of the median img/s should
be 1.0: zoo's forward is torchvision's; a ratio below 0.98 is a bug to find.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import (  # noqa: E402
    add_device_args,
    autocast,
    machine_info,
    print_machine,
    resolve_device,
    results_name,
    synchronize,
    write_results,
)


def _time(model: torch.nn.Module, x: torch.Tensor, steps: int, dtype: str) -> list[float]:
    times = []
    with torch.inference_mode(), autocast(x.device, dtype):
        for _ in range(steps):
            synchronize(x.device)
            t0 = time.perf_counter()
            model(x)
            synchronize(x.device)
            times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    import torchvision

    import zoo

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["resnet18", "resnet50", "vgg16"])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 32])
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (default 5)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per round (default 5)")
    parser.add_argument("--quick", action="store_true", help="resnet18 at batch 1 and 4, 2 rounds of 2 steps")
    parser.add_argument("--out", type=Path, help="results folder (default benchmarks/results)")
    add_device_args(parser)
    args = parser.parse_args()
    device = resolve_device(args.device)
    if args.quick:
        args.models, args.batch_sizes, args.rounds, args.steps = ["resnet18"], [1, 4], 2, 2
    info = machine_info()
    print_machine(info)
    rows = []
    for name in args.models:
        reference = torchvision.models.get_model(name).eval()
        model = zoo.create_model(name).eval()
        model.load_state_dict(reference.state_dict())
        for m in (reference, model):
            m.to(device=device, memory_format=torch.channels_last)
        for batch in args.batch_sizes:
            x = torch.randn(batch, 3, 224, 224, device=device).contiguous(memory_format=torch.channels_last)
            with torch.inference_mode(), autocast(device, args.dtype):
                # equal on CPU in fp32; GPU kernels may pick different algorithms for two identical models
                a, b = model(x).float(), reference(x).float()
                same = torch.equal(a, b) if device.type == "cpu" else torch.allclose(a, b, rtol=1e-2, atol=1e-2)
                assert same, f"{name}: zoo and torchvision outputs differ"
            if device.type == "cuda":  # warm-up: cuDNN picks its algorithms on the first calls
                for m in (model, reference):
                    _time(m, x, 3, args.dtype)
            times: dict[str, list[float]] = {"zoo": [], "torchvision": []}
            for i in range(args.rounds):
                # Alternate which goes first: a fixed order measured up to 4 % between identical models.
                for which in ("zoo", "torchvision") if i % 2 == 0 else ("torchvision", "zoo"):
                    times[which] += _time(model if which == "zoo" else reference, x, args.steps, args.dtype)
            zoo_ips = batch / statistics.median(times["zoo"])
            tv_ips = batch / statistics.median(times["torchvision"])
            row = {"model": name, "batch": batch, "zoo_img_s": round(zoo_ips, 2), "torchvision_img_s": round(tv_ips, 2),
                   "ratio": round(zoo_ips / tv_ips, 3), "steps": args.rounds * args.steps}  # fmt: skip
            rows.append(row)
            print(f"{name:<10} batch {batch:>3}: zoo {zoo_ips:8.1f} img/s  torchvision {tv_ips:8.1f} img/s  "
                  f"zoo/torchvision {row['ratio']:.3f}", flush=True)  # fmt: skip
    path = write_results(results_name("inference", device, args.dtype, args.quick), rows, info, args.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
