"""``zoo export``: a model with its weights as ONNX or a ``torch.export`` program, kept only when its outputs on the
bundled sample images are finite and agree with eager's, with its preprocessing beside it as JSON."""

from __future__ import annotations

import io
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from zoo.data.transforms import create_transform
from zoo.errors import DependencyError, ZooError
from zoo.predict import SAMPLES_DIR, load_image
from zoo.runs import json_of
from zoo.utils.checks import int_in, number_in, one_of, reported
from zoo.utils.files import atomic_path, check_output_file, remove_stale_temp_files, write_text_atomic

FORMATS = {"onnx": ".onnx", "pt2": ".pt2"}
# The keys of the JSON zoo writes beside an export: a file with them (and an export beside it) is zoo's to replace.
SIDECAR_KEYS = frozenset(
    {"model", "architecture", "format", "input", "preprocessing", "output", "label_names", "checked"}
)


class ExportError(ZooError, RuntimeError):
    """An export whose outputs are NaN, infinite or beyond the tolerance from the eager model's (nothing is kept)."""


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


def _onnx_session(model: bytes, threads: int | None = None) -> Any:
    try:
        import onnxruntime as ort
    except ImportError:
        raise DependencyError("running an ONNX export needs onnxruntime", hint="pip install 'zoo[export]'") from None
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def _to_onnx(model: nn.Module, example: torch.Tensor, dims: Any = None) -> bytes:
    try:
        import onnxscript  # noqa: F401  (torch's ONNX exporter needs it)
    except ImportError:
        raise DependencyError("ONNX export needs onnx and onnxscript", hint="pip install 'zoo[export]'") from None
    names = {"input_names": ["image"], "output_names": ["logits"]}
    program = torch.onnx.export(model, (example,), dynamo=True, dynamic_shapes=dims, verbose=False, **names)
    return program.model_proto.SerializeToString()


def onnx_runner(model: nn.Module, example: torch.Tensor, threads: int | None = None) -> Callable[[], Any]:
    """``model`` (float32, CPU, eval) exported to ONNX at ``example``'s shape and loaded in an ONNX Runtime session
    with ``threads`` intra-op threads (its default when None): a function that runs it on ``example``."""
    model = model.eval().float().cpu()
    with torch.no_grad():
        session = _onnx_session(_to_onnx(model, example), threads)
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
    """Export ``model`` to ``out`` as ``fmt`` with a dynamic batch (``batch`` None) or a fixed one, and
    ``<out>.json`` with its preprocessing, once its outputs on the sample images agree with eager's."""
    with reported("the export", hint="give a format of zoo export, a batch of 1 or more, finite tolerances >= 0"):
        one_of("--format", fmt, tuple(FORMATS))
        if batch is not None:
            int_in("--batch", batch, 1)
        number_in("--atol", atol, 0)
        number_in("--rtol", rtol, 0)
    out = Path(out)
    meta = out.with_name(out.name + ".json")
    # An existing export is zoo's, known by its sidecar; any other file, a link or a folder is never replaced.
    check_output_file(out, "--output", lambda p: json_of(meta, SIDECAR_KEYS) is not None)
    check_output_file(meta, "--output", lambda p: json_of(p, SIDECAR_KEYS) is not None)
    remove_stale_temp_files(out.parent, (out.name, meta.name))  # a killed export's, of this file
    model = model.eval().float().cpu()
    start = time.perf_counter()
    x = sample_inputs(model)
    example = x[: batch or 2] if batch is None or batch <= len(x) else x[:1].expand(batch, *x.shape[1:]).clone()
    checked = x if batch is None else example
    dims = ({0: torch.export.Dim("batch", min=1, max=4096)},) if batch is None else None
    with torch.no_grad():
        eager = model(checked)
        if fmt == "pt2":
            buffer = io.BytesIO()  # written by torch in memory: a full disk is then Python's OSError, not an abort
            torch.export.save(torch.export.export(model, (example,), dynamic_shapes=dims), buffer)
            data = buffer.getvalue()
            got = torch.export.load(io.BytesIO(data)).module()(checked)
        else:
            data = _to_onnx(model, example, dims)
            session = _onnx_session(data)
            got = torch.from_numpy(session.run(None, {session.get_inputs()[0].name: checked.numpy()})[0])
    what = f"the {fmt} export of {name or 'the model'}"
    if not bool(torch.isfinite(eager).all() and torch.isfinite(got).all()):
        hint = "the weights, or the normalisation (mean, std) they came with, are broken"
        raise ExportError(f"{what} gives NaN or infinite outputs on the sample images; nothing was written", hint=hint)
    worst = float((got - eager).abs().max()) if got.shape == eager.shape else math.inf
    if got.shape != eager.shape or bool(((got - eager).abs() > atol + rtol * eager.abs()).any()):
        raise ExportError(
            f"{what} differs from the eager model by up to {worst:.3g} on {len(checked)} sample images "
            f"(allowed: {atol} + {rtol} x |output|); nothing was written",
            hint="a model that is not deterministic cannot be exported; or raise --atol/--rtol",
        )
    try:
        with atomic_path(out) as tmp:
            tmp.write_bytes(data)
        write_text_atomic(
            meta, json.dumps(_preprocessing(model, name or "", fmt, batch, len(checked), worst), indent=1)
        )
    except OSError as e:  # a write names no file: a full disk is said of the one asked for
        raise OSError(e.errno, e.strerror, str(out)) from None
    return ExportResult(out, meta, fmt, len(checked), worst, time.perf_counter() - start)


def describe(result: ExportResult) -> str:
    """One line: where the export is and how close it is to eager."""
    return (
        f"wrote {result.path} ({result.format}) and {result.preprocessing_path.name}: max |export - eager| "
        f"{result.max_abs_diff:.2g} on {result.images} sample images, {result.seconds:.1f} s"
    )
