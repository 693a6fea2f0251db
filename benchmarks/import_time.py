"""How much `import zoo` adds over `import torch`, in fresh processes (medians).

    python benchmarks/import_time.py [--runs 7]

Each run is a new interpreter that imports torch, then zoo, timing both with perf_counter, so the
difference is zoo's own cost with torch already loaded (as it always is for a zoo user).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

PROBE = """
import json, sys, time
t0 = time.perf_counter(); import torch; t1 = time.perf_counter()
import zoo; t2 = time.perf_counter()
heavy = sorted({"torchvision", "timm", "huggingface_hub", "matplotlib"} & set(sys.modules))
print(json.dumps({"torch": t1 - t0, "zoo": t2 - t1, "heavy": heavy}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    results = []
    for _ in range(args.runs):
        out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
        results.append(json.loads(out.stdout))
    torch_s = statistics.median(r["torch"] for r in results)
    zoo_s = statistics.median(r["zoo"] for r in results)
    print(f"runs: {args.runs}")
    print(f"import torch          median {torch_s * 1000:8.1f} ms")
    print(f"import zoo (after it) median {zoo_s * 1000:8.1f} ms   (goal: < 100 ms)")
    print(f"heavy modules imported by zoo: {results[0]['heavy'] or 'none'}")


if __name__ == "__main__":
    main()
