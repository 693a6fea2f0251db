"""Charts of the committed benchmark results, drawn as inline SVG when the site is built.

Each bar is a ratio read from a results file in ``benchmarks/results/``; nothing here is typed by hand, so
the charts follow the files. The ratios point two ways: throughput (zoo / peer, 1.0 is a tie, higher is
better for zoo; one chart for the CPU and one for the GPU run) and start-up time (peer / zoo: how many
times longer the peer takes, on a log scale, since import costs differ by a factor of hundreds).
"""

from __future__ import annotations

import json
import math
from html import escape
from pathlib import Path

RESULTS = Path(__file__).resolve().parent.parent / "benchmarks" / "results"


def _rows(name: str) -> list[dict]:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text(encoding="utf-8"))["rows"] if path.is_file() else []


def throughput_bars(device: str = "") -> list[tuple[str, float]]:
    """(label, zoo / peer) for inference and training throughput; ``device="cuda"`` reads the GPU run's files."""
    sfx = f"-{device}" if device else ""
    bars = []
    for dtype in ("", "-bf16", "-fp16"):
        tag = f" {dtype[1:]}" if dtype else ""
        bars += [(f"inference{tag} {r['model']} batch {r['batch']} vs torchvision", r["ratio"])
                 for r in _rows(f"inference{sfx}{dtype}")]  # fmt: skip
    bars += [(f"training {r['model']} vs a plain loop", r["zoo_img_s"] / r["plain_img_s"])
             for r in _rows(f"train_overhead{sfx}")]  # fmt: skip
    bars += [(f"training {r['model']} vs timm train.py", r["zoo_over_timm_img_s"]) for r in _rows(f"train_timm{sfx}")]
    return bars


def startup_bars() -> list[tuple[str, float]]:
    """(label, peer / zoo) for import cost and loading pretrained weights."""
    imports = {r["library"]: r["import_ms_after_torch"] for r in _rows("import_time")}
    zoo_ms = imports.get("zoo")
    bars = [(f"import {lib}", ms / zoo_ms) for lib, ms in imports.items() if lib != "zoo" and zoo_ms]
    for r in _rows("load_pretrained"):
        bars.append((f"load {r['model']}: torchvision", r["torchvision_over_zoo"]))
        bars.append((f"load {r['model']}: timm", r["timm_over_zoo"]))
    return bars


def svg_bars(bars: list[tuple[str, float]], title: str, log: bool = False) -> str:
    """A horizontal bar chart with a line at 1.0; ``log`` puts the ratios on a log scale."""
    if not bars:
        return ""
    label_w, plot_w, row_h, top = 330, 360, 22, 34
    values = [v for _, v in bars]
    if log:
        hi = math.ceil(math.log10(max(values + [10.0])))
        pos = lambda v: plot_w * max(math.log10(v), 0.0) / hi  # noqa: E731
        ticks = [10.0**k for k in range(hi + 1)]
    else:
        hi = max(1.2, math.ceil(max(values) * 10) / 10)
        pos = lambda v: plot_w * v / hi  # noqa: E731
        ticks = [k / 4 for k in range(int(hi * 4) + 1)]
    height = top + row_h * len(bars) + 24
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_w + plot_w + 70}" height="{height}" '
        f'font-family="sans-serif" font-size="12" role="img" aria-label="{escape(title)}">',
        f'<text x="0" y="16" font-weight="bold">{escape(title)}</text>',
    ]
    for t in ticks:
        x = label_w + pos(t)
        out.append(f'<line x1="{x:.1f}" y1="{top - 6}" x2="{x:.1f}" y2="{height - 20}" stroke="#ddd"/>')
        out.append(f'<text x="{x:.1f}" y="{height - 6}" text-anchor="middle" fill="#555">{t:g}</text>')
    for i, (label, v) in enumerate(bars):
        y = top + i * row_h
        colour = "#2e7d32" if v >= 0.98 else "#c62828"
        out.append(f'<text x="{label_w - 8}" y="{y + 14}" text-anchor="end">{escape(label)}</text>')
        w = max(pos(v), 1.0)
        out.append(f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row_h - 8}" fill="{colour}"/>')
        out.append(f'<text x="{label_w + w + 4:.1f}" y="{y + 14}">{v:.3g}</text>')
    one = label_w + pos(1.0)
    out.append(f'<line x1="{one:.1f}" y1="{top - 6}" x2="{one:.1f}" y2="{height - 20}" stroke="#000"/>')
    out.append("</svg>")
    return "\n".join(out)


def benchmark_charts() -> str:
    """Both charts, as the Markdown (raw HTML) that replaces the page's placeholder."""
    parts = [
        svg_bars(throughput_bars(), "Throughput on the CPU, zoo / peer (1 = equal; red: below 0.98)"),
        svg_bars(throughput_bars("cuda"), "Throughput on the GPU, zoo / peer (1 = equal; red: below 0.98)"),
        svg_bars(startup_bars(), "Start-up time, peer / zoo (times longer than zoo; log scale)", log=True),
    ]
    parts = [p for p in parts if p]
    return "\n\n".join(parts) + "\n" if parts else "No results are committed yet: run `make bench`.\n"
