"""What `import zoo` adds over `import torch`, against `import torchvision` and `import timm`, in fresh processes.

    python benchmarks/import_time.py [--runs 7] [--quick]

Each run is a new interpreter that imports torch, then one library, timing both with perf_counter, so each
library's own cost is measured with torch already loaded (as it always is for their users). Medians.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_info, print_machine, write_results  # noqa: E402

PROBE = """
import json, sys, time
t0 = time.perf_counter(); import torch; t1 = time.perf_counter()
import {lib}; t2 = time.perf_counter()
heavy = sorted({{"torchvision", "timm", "huggingface_hub", "matplotlib"}} & set(sys.modules))
print(json.dumps({{"torch": t1 - t0, "lib": t2 - t1, "heavy": heavy}}))
"""
LIBS = ("zoo", "torchvision", "timm")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="1 run: checks that the script runs")
    parser.add_argument("--out", type=Path, help="results folder (default benchmarks/results)")
    args = parser.parse_args()
    runs = 1 if args.quick else args.runs
    info = machine_info()
    print_machine(info)
    results: dict[str, list[dict]] = {lib: [] for lib in LIBS}
    for _ in range(runs):
        for lib in LIBS:  # interleaved, so that drift of the machine hits every library alike
            out = subprocess.run([sys.executable, "-c", PROBE.format(lib=lib)], capture_output=True, text=True,
                                 check=True)  # fmt: skip
            results[lib].append(json.loads(out.stdout))
    torch_ms = statistics.median(r["torch"] for rs in results.values() for r in rs) * 1000
    print(f"runs: {runs}; import torch median {torch_ms:.1f} ms")
    rows = []
    zoo_ms = statistics.median(r["lib"] for r in results["zoo"]) * 1000
    for lib in LIBS:
        ms = statistics.median(r["lib"] for r in results[lib]) * 1000
        row = {"library": lib, "import_ms_after_torch": round(ms, 1), "zoo_over_this": round(zoo_ms / ms, 3),
               "heavy_modules": " ".join(results[lib][0]["heavy"]), "runs": runs}  # fmt: skip
        rows.append(row)
        print(f"import {lib:<12} {ms:8.1f} ms after torch   zoo / {lib}: {row['zoo_over_this']:.3f}")
    print(f"heavy modules imported by zoo: {results['zoo'][0]['heavy'] or 'none'}")
    print(f"wrote {write_results('import_time' + ('-quick' if args.quick else ''), rows, info, args.out)}")


if __name__ == "__main__":
    main()
