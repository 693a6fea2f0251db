"""``zoo bench``: inference and training throughput, MACs, parameters and peak memory of models.

zoo bench resnet50                              # fp32, batch 32, channels_last, CPU or CUDA
zoo bench 'resnet*' --batch-size 1 --mode inference --format csv --output bench.csv
zoo bench resnet20 --dtype bf16 --compile       # bf16 autocast, torch.compile
zoo bench resnet50 --runtime eager onnxruntime  # CPU latency of the ONNX export beside eager PyTorch
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path

from zoo.cli import check_size_options, options_for
from zoo.errors import ArgumentValueError
from zoo.utils import parse_device, set_threads, write_text_atomic
from zoo.utils.files import check_output_file

# column -> (header, format)
_COLUMNS = {
    "model": ("model", "{}"),
    "runtime": ("runtime", "{}"),
    "batch_size": ("batch", "{}"),
    "input_size": ("input", "{}"),
    "dtype": ("dtype", "{}"),
    "infer_samples_per_s": ("infer img/s", "{:.1f}"),
    "infer_step_ms": ("infer ms/step", "{:.2f}"),
    "train_samples_per_s": ("train img/s", "{:.1f}"),
    "train_step_ms": ("train ms/step", "{:.2f}"),
    "params": ("params (M)", "{:.2f}"),
    "gmacs": ("GMACs", "{:.3f}"),
    "peak_memory_mb": ("peak mem (MiB)", "{:.0f}"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``zoo bench``."""
    parser.add_argument("models", nargs="+", metavar="MODEL", help="model names or fnmatch patterns ('resnet*')")
    parser.add_argument("--batch-size", type=int, default=32, help="samples per step (default 32)")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--input-size", nargs=3, type=int, metavar=("C", "H", "W"), help="input size (default: model's)")
    size.add_argument("--img-size", type=int, help="square input size, keeping the model's channels")
    parser.add_argument("--mode", choices=("both", "inference", "train"), default="both", help="what to time")
    parser.add_argument("--dtype", choices=("fp32", "bf16", "fp16"), default="fp32", help="autocast dtype (fp16: GPU)")
    parser.add_argument(
        "--channels-last", action=argparse.BooleanOptionalAction, default=True, help="NHWC memory format (default on)"
    )
    parser.add_argument(
        "--compile",
        dest="compile_mode",
        nargs="?",
        const="default",
        metavar="MODE",
        help="torch.compile the model (optionally with a mode, e.g. max-autotune)",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    parser.add_argument(
        "--runtime",
        nargs="+",
        choices=("eager", "onnxruntime"),
        default=["eager"],
        help="eager PyTorch (default) and/or the ONNX export in ONNX Runtime (CPU, fp32, inference; "
        "needs the export extra); one row per runtime",
    )
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (default 3)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps; the median is reported (default 10)")
    parser.add_argument("--threads", type=int, help="torch CPU threads, at most 4 per core (default: torch's choice)")
    parser.add_argument("--stem", choices=("imagenet", "cifar"), help="build ResNet/VGG with this stem")
    parser.add_argument("--num-classes", type=int, help="build with this many classes")
    parser.add_argument("--format", choices=("table", "csv", "json"), default="table", help="output format")
    parser.add_argument(
        "--output", help="write the results to this new file (or one zoo bench wrote) instead of standard output"
    )
    parser.add_argument("--force", action="store_true", help="replace --output even if zoo bench did not write it")


def _format(rows: list[dict], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(rows, indent=1) + "\n"
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
        return buf.getvalue()
    table = [[h for h, _ in _COLUMNS.values()]]
    for row in rows:
        cells = []
        for key, (_, spec) in _COLUMNS.items():
            value = row[key]
            if key == "params":
                value = value / 1e6
            cells.append("-" if value is None else spec.format(value))
        table.append(cells)
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    lines = [
        "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
        for r in table
    ]
    first = rows[0]
    lines.append(
        f"device {first['device']}, channels_last {first['channels_last']}, compiled {first['compiled']}, "
        f"median of {first['steps']} timed steps, torch {first['torch_version']}"
    )
    return "\n".join(lines) + "\n"


def _is_bench_output(path: Path) -> bool:
    """Whether ``path`` holds results zoo bench wrote (its columns, in any of its formats)."""
    try:
        with open(path, encoding="utf-8") as f:
            head = f.read(4096)
    except (OSError, UnicodeDecodeError):
        return False
    return any(mark in head for mark in ("infer_samples_per_s", "infer img/s"))


def main(args: argparse.Namespace) -> int:
    """Run ``zoo bench``."""
    from zoo.benchmark import benchmark_model
    from zoo.factory import list_models

    names: list[str] = []
    for pattern in args.models:
        matched = list_models(pattern) if any(c in pattern for c in "*?[") else [pattern]
        if not matched:
            raise ArgumentValueError(f"no model matches {pattern!r}; `zoo list` lists them")
        names += matched
    runtimes = list(dict.fromkeys(args.runtime))
    if "onnxruntime" in runtimes and args.mode == "train":
        raise ArgumentValueError("--runtime onnxruntime times inference only", hint="use --mode inference or both")
    check_size_options(args.img_size, args.input_size)
    if args.output:  # checked before anything is measured
        check_output_file(args.output, "--output", _is_bench_output, args.force)
    set_threads(args.threads)
    device = str(parse_device("cpu" if args.device == "auto" and runtimes == ["onnxruntime"] else args.device))
    kwargs = {k: v for k, v in (("stem", args.stem), ("num_classes", args.num_classes)) if v is not None}
    options = {**options_for(benchmark_model, args), "input_size": args.input_size or args.img_size, "device": device}
    options.pop("runtime")  # one row per runtime
    options.update(inference=args.mode in ("both", "inference"), model_kwargs=kwargs)
    rows = []
    for name in dict.fromkeys(names):
        for runtime in runtimes:
            train = args.mode in ("both", "train") and runtime == "eager"
            rows.append(benchmark_model(name, **options, train=train, runtime=runtime).as_dict())
        if args.format == "table" and args.output is None and len(names) > 1:
            print(f"{name}: done", file=sys.stderr, flush=True)
    text = _format(rows, args.format)
    if args.output:
        write_text_atomic(args.output, text)
        print(f"wrote {args.output}")
    else:
        sys.stdout.write(text)
    return 0
