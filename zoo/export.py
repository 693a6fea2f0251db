"""``zoo export``: a model with its weights as ONNX or a ``torch.export`` program, checked against eager.

The bundled sample images go through the exported model (ONNX Runtime, or the reloaded program) and the eager one;
the export is kept only when every output agrees within ``atol + rtol * |eager|``. Its preprocessing is written
beside it as JSON, so that a deployment does not guess the input size, resizing, mean, std or class names.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from zoo.errors import ArgumentValueError, DependencyError, ZooError
from zoo.utils.files import atomic_path, write_text_atomic

FORMATS = {"onnx": ".onnx", "pt2": ".pt2"}


class ExportError(ZooError, RuntimeError):
    """An export whose outputs differ from the eager model's beyond the tolerance (nothing is kept)."""


@dataclass
class ExportResult:
    """What ``export_model`` wrote and how well the export agrees with eager."""

    path: Path
    preprocessing_path: Path
    format: str
    images: int
    max_abs_diff: float
    seconds: float


def sample_inputs(model: nn.Module) -> torch.Tensor:
    """The bundled sample images through the model's eval transform: a real batch of the model's input size."""
    from zoo.data.transforms import create_transform
    from zoo.predict import SAMPLES_DIR, load_image

    transform = create_transform(model.pretrained_cfg)
    files = sorted(SAMPLES_DIR.glob("*.png"))
    return torch.stack([transform(load_image(f)) for f in files])


def _preprocessing(model: nn.Module, name: str, fmt: str, batch: int | None, images: int, diff: float) -> dict:
    cfg = model.pretrained_cfg
    channels, height, width = (int(v) for v in cfg["input_size"])
    crop_pct = float(cfg.get("crop_pct", 1.0))
    return {
        "model": name,
        "architecture": cfg.get("architecture"),
        "format": fmt,
        "input": {"shape": [batch or "batch", channels, height, width], "dtype": "float32", "layout": "NCHW"},
        "preprocessing": {
            "convert": "L" if channels == 1 else "RGB",
            "resize_shorter_side": int(math.floor(min(height, width) / crop_pct)),
            "interpolation": cfg.get("interpolation", "bilinear"),
            "center_crop": [height, width],
            "scale": 1 / 255,
            "mean": list(cfg["mean"]),
            "std": list(cfg["std"]),
        },
        "output": {"shape": [batch or "batch", model.num_classes], "kind": "logits"},
        "label_names": list(cfg.get("label_names") or []),
        "checked": {"images": images, "max_abs_diff": diff, "against": "the eager model on the bundled samples"},
    }


def _onnx_session(path: Path, threads: int | None = None) -> Any:
    try:
        import onnxruntime as ort
    except ImportError:
        raise DependencyError("running an ONNX export needs onnxruntime", hint="pip install 'zoo[export]'") from None
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _run_onnx(path: Path, x: torch.Tensor) -> torch.Tensor:
    session = _onnx_session(path)
    return torch.from_numpy(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0])


def _to_onnx(model: nn.Module, example: torch.Tensor, path: Path, dims: Any = None) -> None:
    try:
        import onnxscript  # noqa: F401  (torch's ONNX exporter needs it)
    except ImportError:
        raise DependencyError("ONNX export needs onnx and onnxscript", hint="pip install 'zoo[export]'") from None
    torch.onnx.export(
        model,
        (example,),
        str(path),
        dynamo=True,
        dynamic_shapes=dims,
        external_data=False,
        input_names=["image"],
        output_names=["logits"],
        verbose=False,
    )


def onnx_runner(model: nn.Module, example: torch.Tensor, threads: int | None = None) -> Callable[[], Any]:
    """``model`` (float32, CPU, eval) exported to ONNX at ``example``'s shape in a temporary folder, loaded in
    an ONNX Runtime session with ``threads`` intra-op threads (its default when None); the returned function
    runs that session on ``example`` (what ``zoo bench --runtime onnxruntime`` times)."""
    model = model.eval().float().cpu()
    with tempfile.TemporaryDirectory(prefix="zoo-onnx-") as tmp:
        path = Path(tmp) / "model.onnx"
        with torch.no_grad():
            _to_onnx(model, example, path)
        session = _onnx_session(path, threads)  # the session holds the model; the file can go
    feed = {session.get_inputs()[0].name: example.contiguous().numpy()}
    return lambda: session.run(None, feed)


def export_model(
    model: nn.Module,
    out: str | Path,
    fmt: str = "onnx",
    name: str | None = None,
    batch: int | None = None,
    atol: float = 1e-4,
    rtol: float = 1e-3,
) -> ExportResult:
    """Export ``model`` (eval mode, float32, CPU) to ``out`` as ``fmt`` ("onnx" or "pt2"), with a dynamic batch
    (``batch`` None) or a fixed one; check it against eager on the sample images, and write
    ``<out>.json`` with the preprocessing. An export that disagrees raises :class:`ExportError`, keeping nothing."""
    if fmt not in FORMATS:
        raise ArgumentValueError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if batch is not None and batch < 1:
        raise ArgumentValueError(f"--batch {batch}: give a positive batch size, or leave it out for a dynamic batch")
    out = Path(out)
    model = model.eval().float().cpu()
    start = time.perf_counter()
    x = sample_inputs(model)
    example = x[: batch or 2] if batch is None or batch <= len(x) else x[:1].expand(batch, *x.shape[1:]).clone()
    checked = x if batch is None else example
    dims = ({0: torch.export.Dim("batch", min=1, max=4096)},) if batch is None else None
    with torch.no_grad():
        eager = model(checked)
        with atomic_path(out, suffix=f".part{FORMATS[fmt]}") as tmp:  # torch.export.load wants its suffix
            if fmt == "pt2":
                program = torch.export.export(model, (example,), dynamic_shapes=dims)
                torch.export.save(program, tmp)
                got = torch.export.load(tmp).module()(checked)
            else:
                _to_onnx(model, example, tmp, dims)
                got = _run_onnx(tmp, checked)
            diff = (got - eager).abs()
            limit = atol + rtol * eager.abs()
            worst = float(diff.max())
            if got.shape != eager.shape or bool((diff > limit).any()):
                raise ExportError(
                    f"the {fmt} export of {name or 'the model'} differs from the eager model by up to {worst:.3g} "
                    f"on {len(checked)} sample images (allowed: {atol} + {rtol} x |output|); nothing was written"
                )
    meta = out.with_name(out.name + ".json")
    write_text_atomic(meta, json.dumps(_preprocessing(model, name or "", fmt, batch, len(checked), worst), indent=1))
    return ExportResult(out, meta, fmt, len(checked), worst, time.perf_counter() - start)


def describe(result: ExportResult) -> str:
    """One line: where the export is and how close it is to eager."""
    return (
        f"wrote {result.path} ({result.format}) and {result.preprocessing_path.name}: max |export - eager| "
        f"{result.max_abs_diff:.2g} on {result.images} sample images, {result.seconds:.1f} s"
    )
