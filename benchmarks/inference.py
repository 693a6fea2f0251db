"""CPU inference throughput of zoo's models against torchvision's identical ones, in one process.

    python benchmarks/inference.py            # resnet18, resnet50, vgg16 at batch 1 and 32
    python benchmarks/inference.py --quick    # resnet18 only, few steps: checks that the script runs
    python benchmarks/inference.py --device cuda --dtype bf16   # the same on a GPU, under autocast

Both libraries' models hold the same weights (torchvision's state_dict, loaded into zoo's model, which has
the same keys): ``--instances`` of each (default 3), built interleaved (torchvision, zoo, torchvision, ...).
One instance can run several per cent slower than an identical one built beside it (measured on the CPU
and on an H200 with 8 torchvision and zoo resnet50s: one instance of 8 ran 11 % slower), so a library is
timed as the median of its instances, never as one. They run in eval mode under torch.inference_mode with
channels_last and are timed in rounds whose order rotates. The ratio zoo / torchvision is the median over
rounds of each round's ratio (paired measurements seconds apart, which the shared machine's drift hits
alike); the img/s columns are medians over all steps. It should be 1.0: zoo's forward is torchvision's; a
ratio below 0.98 is a bug to find.
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
    parser.add_argument("--rounds", type=int, default=8, help="rounds, order rotating (default 8)")
    parser.add_argument("--steps", type=int, default=1, help="timed steps per instance per round (default 1)")
    parser.add_argument("--instances", type=int, default=3, help="models built per library (default 3)")
    parser.add_argument("--quick", action="store_true", help="resnet18, batch 1 and 4, 1 instance, 2 rounds")
    parser.add_argument("--out", type=Path, help="results folder (default benchmarks/results)")
    add_device_args(parser)
    args = parser.parse_args()
    device = resolve_device(args.device)
    if args.quick:
        args.models, args.batch_sizes, args.rounds, args.steps, args.instances = ["resnet18"], [1, 4], 2, 2, 1
    info = machine_info()
    print_machine(info)
    rows = []
    for name in args.models:
        state = torchvision.models.get_model(name).state_dict()
        built = []
        for lib in ("torchvision", "zoo") * args.instances:
            m = torchvision.models.get_model(name) if lib == "torchvision" else zoo.create_model(name)
            m.load_state_dict(state)
            built.append((lib, m.eval().to(device=device, memory_format=torch.channels_last)))
        del state
        for batch in args.batch_sizes:
            x = torch.randn(batch, 3, 224, 224, device=device).contiguous(memory_format=torch.channels_last)
            with torch.inference_mode(), autocast(device, args.dtype):
                # equal on CPU in fp32; GPU kernels may pick different algorithms for two identical models
                a, b = built[1][1](x).float(), built[0][1](x).float()
                same = torch.equal(a, b) if device.type == "cpu" else torch.allclose(a, b, rtol=1e-2, atol=1e-2)
                assert same, f"{name}: zoo and torchvision outputs differ"
            if device.type == "cuda":  # warm-up: cuDNN picks its algorithms on the first calls
                for _, m in built:
                    _time(m, x, 3, args.dtype)
            times: dict[str, list[float]] = {"zoo": [], "torchvision": []}
            ratios = []
            for i in range(args.rounds):
                # Rotate the order, so that over len(built) rounds every instance runs in every position.
                per_instance = {}
                for j in [(i + k) % len(built) for k in range(len(built))]:
                    lib, m = built[j]
                    t = _time(m, x, args.steps, args.dtype)
                    times[lib] += t
                    per_instance[j] = statistics.median(t)
                # Each library's time is the median of its instances, so that one slow instance moves nothing;
                # the ratio pairs measurements seconds apart, which the machine's drift over minutes hits alike.
                lib_time = {lib: statistics.median(v for j, v in per_instance.items() if built[j][0] == lib)
                            for lib in times}  # fmt: skip
                ratios.append(lib_time["torchvision"] / lib_time["zoo"])
            zoo_ips = batch / statistics.median(times["zoo"])
            tv_ips = batch / statistics.median(times["torchvision"])
            row = {"model": name, "batch": batch, "zoo_img_s": round(zoo_ips, 2),
                   "torchvision_img_s": round(tv_ips, 2), "ratio": round(statistics.median(ratios), 3),
                   "instances": args.instances, "rounds": args.rounds, "steps": args.steps}  # fmt: skip
            rows.append(row)
            print(f"{name:<10} batch {batch:>3}: zoo {zoo_ips:8.1f} img/s  torchvision {tv_ips:8.1f} img/s  "
                  f"zoo/torchvision {row['ratio']:.3f}", flush=True)  # fmt: skip
        del built
    path = write_results(results_name("inference", device, args.dtype, args.quick), rows, info, args.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
