"""What machine a benchmark ran on, and one place that writes its results (CSV and JSON with that header).

Imported by the scripts in this folder: ``from machine import machine_info, write_results``.
"""

from __future__ import annotations

import csv
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def machine_info() -> dict[str, Any]:
    """CPU model, cores, Python and library versions (and the GPU, when there is one)."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "date": time.strftime("%Y-%m-%d"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
    for lib in ("torchvision", "timm"):
        try:
            info[lib] = __import__(lib).__version__
        except ImportError:
            info[lib] = None
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
        info["driver"] = _driver_version()
    return info


def _driver_version() -> str | None:
    """The NVIDIA driver's version, read from nvidia-smi (torch does not report it)."""
    import subprocess

    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30, check=True).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return out.strip().splitlines()[0] if out.strip() else None


def print_machine(info: dict[str, Any]) -> None:
    """One line a reader can compare against their own machine."""
    gpu = f", GPU {info['gpu']} (CUDA {info['cuda']}, driver {info.get('driver')})" if info.get("gpu") else ""
    print(f"machine: {info['cpu']}, {info['cores']} cores ({info['torch_threads']} torch threads){gpu}; "
          f"torch {info['torch']}, torchvision {info['torchvision']}, timm {info['timm']}; {info['date']}")  # fmt: skip


def write_results(name: str, rows: list[dict[str, Any]], info: dict[str, Any], out_dir: Path | None = None) -> Path:
    """Write ``rows`` as ``<name>.csv`` and ``<name>.json`` (with the machine) into ``out_dir`` (default results/)."""
    folder = Path(out_dir) if out_dir else RESULTS
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps({"machine": info, "rows": rows}, indent=1) + "\n")
    with open(folder / f"{name}.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return folder / f"{name}.csv"


DTYPES = ("fp32", "bf16", "fp16")


def add_device_args(parser: Any, dtype: bool = True) -> None:
    """``--device`` (default: CUDA when there is a GPU) and, with ``dtype``, ``--dtype`` (autocast)."""
    parser.add_argument("--device", help="cpu or cuda (default: cuda when a GPU is present, else cpu)")
    if dtype:
        parser.add_argument("--dtype", choices=DTYPES, default="fp32", help="autocast dtype; fp16 needs CUDA")


def resolve_device(name: str | None) -> Any:
    """The torch device asked for, or CUDA when available; a clear error for CUDA without a GPU."""
    import torch

    device = torch.device(name or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch sees no GPU on this machine (use --device cpu)")
    return device


def autocast(device: Any, dtype: str) -> Any:
    """``torch.autocast`` for bf16/fp16, nothing for fp32 (fp16 autocast exists only on CUDA here)."""
    import contextlib

    import torch

    if dtype == "fp32":
        return contextlib.nullcontext()
    if dtype == "fp16" and device.type != "cuda":
        raise SystemExit("--dtype fp16 needs --device cuda; on CPU use bf16")
    return torch.autocast(device.type, dtype=torch.bfloat16 if dtype == "bf16" else torch.float16)


def synchronize(device: Any) -> None:
    """Wait for queued GPU work, so that a timer measures the work and not its launch."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def results_name(base: str, device: Any, dtype: str = "fp32", quick: bool = False) -> str:
    """``inference`` for the CPU in fp32; ``inference-cuda-bf16`` ...: a GPU run is its own, labelled table."""
    parts = [base] + ([device.type] if device.type != "cpu" else []) + ([dtype] if dtype != "fp32" else [])
    return "-".join(parts + (["quick"] if quick else []))
