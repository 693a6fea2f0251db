"""Describing weights for people: what ``zoo info`` prints about a model's pretrained weights."""

from __future__ import annotations

import fnmatch

from zoo.errors import ManifestError
from zoo.hub import manifest
from zoo.hub.fetch import cached_state
from zoo.hub.load import resolve_name

__all__ = ["describe_weights", "expand_names", "human_size"]


def human_size(size: int | None) -> str:
    if size is None:
        return "unknown"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{size} B"
        value /= 1024
    return f"{size} B"


def _source_lines(name: str, entry: manifest.WeightsEntry) -> list[str]:
    """One line per source, in the order they are tried, with what the manifest pins of each."""
    lines = []
    for i, source in enumerate(manifest.resolve_sources(entry)):
        label = "source" if i == 0 else "else"
        lines.append(f"    {label:<12} {manifest.describe(source)}")
        if not source.third_party:
            continue
        if source.pinned:
            at = f"commit {source.revision}, " if source.type == "hub" else ""
            lines.append(f"    {'':<12} pinned in the manifest: {at}sha256 {source.sha256}")
        else:
            how = "the Hub's SHA-256 (X-Linked-Etag)" if source.type == "hub" else "the hash prefix in its name"
            lines.append(f"    {'':<12} not pinned in the manifest: checked against {how}, then pinned on this host")
    return lines


def describe_weights(name: str) -> str:
    """Text describing the weights of ``name`` (an arch: all its tags; ``arch.tag``: that one); "" if none."""
    arch, _, tag = name.partition(".")
    entries = manifest.entries_for_arch(arch)
    if tag:
        entries = {tag: entries[tag]} if tag in entries else {}
    if not entries:
        return ""
    try:
        default = manifest.default_tag(arch)
    except ValueError:
        default = None
    lines = ["pretrained weights:"]
    for t, e in entries.items():
        full = f"{arch}.{t}"
        metrics = e.metrics or {}
        origin = e.origin or {}
        c, h, w = e.input_size
        size = f"    size         {human_size(e.size)}" + (f" ({e.size:,} bytes)" if e.size else "")
        lines += [
            f"  {full}{'  (default)' if t == default else ''}",
            f"    status       {e.status}",
            *_source_lines(full, e),
            *([f"    sha256       {e.sha256}", size] if e.sha256 or not e.published else []),
            f"    on this host {cached_state(full)}",
            f"    dataset      {e.dataset or 'unknown'}, {e.num_classes} classes",
            f"    input        {c} x {h} x {w}, {e.interpolation}, crop_pct {e.crop_pct:.4g}",
            f"    mean / std   {tuple(e.mean)} / {tuple(e.std)}",
        ]
        if metrics:
            top = ", ".join(f"{k} {metrics[k]:.3f}%" for k in ("top1", "top5") if metrics.get(k) is not None)
            on = f" on the {metrics['eval_set']}" if metrics.get("eval_set") else ""
            by = f" (measured by {metrics['measured_by']})" if metrics.get("measured_by") else ""
            lines.append(f"    metrics      {top or 'none'}{on}{by}")
            if metrics.get("command"):
                lines.append(f"    measured by  {metrics['command']}")
        lines.append(f"    license      {e.license or 'unknown'}")
        if origin.get("command"):
            lines.append(f"    produced by  {origin['command']}")
        for key in ("upstream", "hf_hub", "url", "recipe"):
            if origin.get(key):
                lines.append(f"    {key:<12} {origin[key]}")
    return "\n".join(lines)


def expand_names(names: list[str]) -> list[str]:
    """Weights names for arguments that are an arch (its default tag), ``arch.tag`` or an fnmatch pattern."""
    known = manifest.weight_names()
    out: list[str] = []
    for name in names:
        if any(c in name for c in "*?["):
            matches = [n for n in known if fnmatch.fnmatchcase(n, name)]
            if not matches:
                raise ManifestError(f"no weights match {name!r}; `zoo list --pretrained` lists them")
            out += matches
        else:
            arch, tag = resolve_name(name)
            out.append(f"{arch}.{tag}")
    return list(dict.fromkeys(out))
