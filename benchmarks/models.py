"""``zoo bench`` over a set of models and dtypes, kept as a results table (inference and training img/s, MACs,
parameters, peak memory).

    python benchmarks/models.py                                  # CPU: resnet18, resnet20, mnist_cnn in fp32
    python benchmarks/models.py --device cuda --dtypes fp32 bf16 fp16 --compile resnet50
    python benchmarks/models.py --quick                          # mnist_cnn, 2 steps: checks that the script runs

Each row is one ``zoo.benchmark.benchmark_model`` call, the function behind ``zoo bench``: random weights
and data, channels_last, the median of ``--steps`` timed steps after warm-up. ImageNet-stem models run at
``--batch-size``, the CIFAR and MNIST models at ``--small-batch-size`` (their training batch). Models named
in ``--compile`` get a second row under ``torch.compile`` in the last dtype given.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import add_device_args, machine_info, print_machine, resolve_device, results_name, write_results  # noqa: E402


def main() -> None:
    from zoo.benchmark import benchmark_model
    from zoo.factory import create_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["resnet18", "resnet20", "mnist_cnn"])
    parser.add_argument("--dtypes", nargs="+", choices=("fp32", "bf16", "fp16"), default=["fp32"])
    parser.add_argument("--batch-size", type=int, default=32, help="batch of the 224x224 models (default 32)")
    parser.add_argument("--small-batch-size", type=int, default=128, help="batch of the 32x32/28x28 models")
    parser.add_argument("--steps", type=int, default=10, help="timed steps, median reported (default 10)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--compile", nargs="*", default=[], metavar="MODEL", help="also time these compiled")
    parser.add_argument("--quick", action="store_true", help="mnist_cnn in fp32, 2 steps")
    parser.add_argument("--out", type=Path, help="results folder (default benchmarks/results)")
    add_device_args(parser, dtype=False)
    args = parser.parse_args()
    device = resolve_device(args.device)
    if args.quick:
        args.models, args.dtypes, args.steps, args.warmup, args.compile = ["mnist_cnn"], ["fp32"], 2, 1, []
    info = machine_info()
    print_machine(info)
    runs = [(name, dtype, False) for name in args.models for dtype in args.dtypes]
    runs += [(name, args.dtypes[-1], True) for name in args.compile]
    # one build per model, to read its input size (benchmark_model builds its own for each row)
    sizes = {name: create_model(name).pretrained_cfg["input_size"][-1] for name in args.models + args.compile}
    rows = []
    for name, dtype, compiled in runs:
        batch = args.small_batch_size if sizes[name] <= 64 else args.batch_size
        r = benchmark_model(name, batch_size=batch, device=str(device), dtype=dtype, warmup=args.warmup,
                            steps=args.steps, compile_mode="default" if compiled else None)  # fmt: skip
        row = {"model": name, "batch": batch, "dtype": dtype, "compiled": compiled,
               "infer_img_s": round(r.infer_samples_per_s, 1), "train_img_s": round(r.train_samples_per_s, 1),
               "params_m": round(r.params / 1e6, 2), "gmacs": round(r.gmacs, 3), "steps": args.steps,
               "peak_mem_mb": None if r.peak_memory_mb is None else round(r.peak_memory_mb)}  # fmt: skip
        rows.append(row)
        print(f"{name:<10} {dtype} batch {batch:>3}{' compiled' if compiled else ''}: inference "
              f"{row['infer_img_s']:10.1f} img/s  training {row['train_img_s']:9.1f} img/s", flush=True)  # fmt: skip
        # after every row: a run stopped at a time limit (a slow compile) keeps the rows it measured
        path = write_results(results_name("models", device, quick=args.quick), rows, info, args.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
