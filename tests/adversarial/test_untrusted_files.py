"""Untrusted weights files and images: hostile headers and metadata, pickles, NaN, wrong dtypes, image bombs."""

from __future__ import annotations

import json
import pickle
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import cli
from PIL import Image
from safetensors.torch import save_file

import zoo
from zoo.errors import WeightsFileError
from zoo.predict import SAMPLES_DIR, load_image, predict
from zoo.pretrained.files import WeightsMetadata


def _mnist_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return zoo.create_model("mnist_cnn").state_dict()


def _save(path: Path, state=None, **cfg) -> Path:
    base = {"input_size": [1, 28, 28], "mean": [0.1307], "std": [0.3081], "num_classes": 10, "crop_pct": 1.0}
    meta = WeightsMetadata(architecture="mnist_cnn", pretrained_cfg={**base, **cfg}).to_header()
    save_file(state or _mnist_state(), path, metadata=meta)
    return path


def _digit() -> Path:
    record = next(r for r in json.loads((SAMPLES_DIR / "samples.json").read_text()) if r["dataset"] == "mnist")
    return SAMPLES_DIR / record["file"]


# ------------------------------------------------------------------------------------------ headers


def _raw_safetensors(header: dict | bytes, body: bytes = b"", length: int | None = None) -> bytes:
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(text) if length is None else length) + text + body


def _t(shape: list[int], start: int, end: int) -> dict:
    return {"dtype": "F32", "shape": shape, "data_offsets": [start, end]}


HEADER_ATTACKS = {
    "length beyond the file": _raw_safetensors({"a": _t([1], 0, 4)}, b"\0" * 4, length=1 << 62),
    "header not JSON": _raw_safetensors(b"{not json at all}"),
    "offsets beyond the data": _raw_safetensors({"a": _t([1 << 20], 0, 1 << 22)}, b"\0" * 16),
    "overlapping tensors": _raw_safetensors({"a": _t([2], 0, 8), "b": _t([2], 4, 12)}, b"\0" * 12),
    "shape and size disagree": _raw_safetensors({"a": _t([1000, 1000], 0, 4)}, b"\0" * 4),
}


@pytest.mark.parametrize("attack", HEADER_ATTACKS)
def test_hostile_safetensors_headers_are_refused_with_the_file_named(tmp_path, capsys, attack):
    path = tmp_path / "hostile.safetensors"
    path.write_bytes(HEADER_ATTACKS[attack])
    with pytest.raises(ValueError, match=str(path)):
        zoo.load_weights(zoo.create_model("mnist_cnn"), path)
    assert cli("predict", "mnist_cnn", str(_digit()), "--checkpoint", str(path)) == 2
    err = capsys.readouterr().err
    assert err.startswith("zoo predict: error: ") and str(path) in err and "Traceback" not in err


def test_a_folder_given_as_checkpoint_is_a_clear_error(tmp_path, capsys):
    assert cli("predict", "mnist_cnn", str(_digit()), "--checkpoint", str(tmp_path)) == 2
    err = capsys.readouterr().err
    assert err.startswith("zoo predict: error: ") and "is a folder" in err and str(tmp_path) in err


class _Payload:
    def __init__(self, evidence: str) -> None:
        self.evidence = evidence

    def __reduce__(self):
        return (open, (self.evidence, "w"))


def test_pickle_payloads_never_run(tmp_path, capsys):
    evidence = tmp_path / "pwned"
    path = tmp_path / "weights.safetensors"  # a pickle under a safetensors name
    path.write_bytes(pickle.dumps({"fc.weight": _Payload(str(evidence))}, protocol=2))
    assert cli("predict", "mnist_cnn", str(_digit()), "--checkpoint", str(path)) == 2
    assert f"{path}" in (err := capsys.readouterr().err) and "zoo convert checkpoint" in err
    out = tmp_path / "o.safetensors"
    assert cli("convert", "checkpoint", str(path), "--model", "mnist_cnn", "--out", str(out)) == 2
    assert "weights_only" in capsys.readouterr().err
    assert not evidence.exists()


# ------------------------------------------------------------------------------------------ metadata


@pytest.mark.parametrize(
    "cfg, message",
    [
        ({"input_size": [1, 60000, 60000]}, "60000"),
        ({"input_size": [1, 32, 32]}, "input_size"),  # mnist_cnn takes only 1x28x28
        ({"mean": [0.1, 0.2, 0.3, 0.4]}, "mean"),
        ({"std": [0.0]}, "std"),
        ({"crop_pct": 1e-6}, "crop_pct"),
        # M4: limits that hold after merging with the model's own cfg, and in float32
        ({"crop_pct": 1e-9}, "crop_pct"),
        ({"crop_pct": 0.001}, "crop_pct"),  # no input_size in the header: the model's 28 px resize to 28,000
        ({"std": [1e-300]}, "std"),
        ({"std": [1e-40]}, "std"),
        ({"input_size": [1, -28, 28]}, "input_size"),
    ],
)
def test_hostile_preprocessing_metadata_is_refused(tmp_path, cfg, message):
    path = _save(tmp_path / "meta.safetensors", **cfg)
    with pytest.raises(ValueError, match=message) as e:
        zoo.create_model("mnist_cnn", checkpoint_path=path)
    assert str(path) in str(e.value)


def test_checkpoint_metadata_cannot_inject_builder_arguments(tmp_path):
    path = tmp_path / "args.safetensors"
    save_file(_mnist_state(), path, metadata={"zoo.model_args": '["not", "a", "mapping"]'})
    with pytest.raises(WeightsFileError) as err:
        zoo.create_model("mnist_cnn", checkpoint_path=path)
    assert err.value.name == "model_args" and err.value.value == ["not", "a", "mapping"]


DEEP = "[" * 100_000 + "]" * 100_000  # valid JSON, nested deeper than Python's recursion limit


def test_deeply_nested_json_anywhere_is_bad_input_not_a_crash(tmp_path, capsys, monkeypatch):
    # In a checkpoint's metadata.
    path = tmp_path / "deep.safetensors"
    save_file(_mnist_state(), path, metadata={"zoo.architecture": "mnist_cnn", "zoo.model_args": DEEP})
    with pytest.raises(WeightsFileError) as err:
        zoo.create_model("mnist_cnn", checkpoint_path=path)
    assert err.value.name == "zoo.model_args"
    assert cli("predict", "mnist_cnn", str(_digit()), "--checkpoint", str(path)) == 2
    err = capsys.readouterr().err
    assert err.startswith("zoo predict: error: ") and "zoo.model_args" in err and "Traceback" not in err
    # In a run's config.json, read by zoo eval.
    run = tmp_path / "run"
    run.mkdir()
    save_file(_mnist_state(), run / "best.safetensors")
    (run / "config.json").write_text(DEEP)
    data = Path(__file__).parents[2] / "no-data"
    assert cli("eval", "mnist_cnn", "--checkpoint", run, "--dataset", "mnist", "--data-dir", data) == 2
    err = capsys.readouterr().err
    assert err.startswith("zoo eval: error: ") and str(run / "config.json") in err and "Traceback" not in err
    # In the manifest.
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "manifest.json").write_text(DEEP)
    monkeypatch.setenv("ZOO_WEIGHTS_DIR", str(weights))
    assert cli("info", "mnist_cnn") == 2
    err = capsys.readouterr().err
    assert str(weights / "manifest.json") in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("name", ["hf-hub:evilorg/probe", "local-dir:/somewhere", "../../etc/passwd"])
def test_a_header_architecture_is_a_model_name_never_a_place(tmp_path, capsys, monkeypatch, name):
    """M2: a checkpoint header's zoo.architecture names a model; it never makes zoo contact a repo or read a folder."""
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # a closed port: any request would fail loudly
    path = tmp_path / "named.safetensors"
    save_file(_mnist_state(), path, metadata={"zoo.architecture": name})
    assert cli("predict", "--checkpoint", str(path), str(_digit())) == 2
    err = capsys.readouterr().err
    assert name in err and "Traceback" not in err and "127.0.0.1" not in err


def _fifo(path: Path) -> Path:
    import os

    os.mkfifo(path)
    return path


@pytest.mark.parametrize("command", ["predict", "convert", "local-dir", "local-dir /dev/zero"])
def test_fifos_and_devices_are_refused_not_read(tmp_path, capsys, command):
    """M3: a FIFO would hang a reader and /dev/zero feed it for ever: every file zoo opens because a user or a file
    named it must be a regular file, read with a bound."""
    import os

    if command == "predict":
        code = cli("predict", "mnist_cnn", "--checkpoint", str(_fifo(tmp_path / "w.safetensors")), str(_digit()))
    elif command == "convert":
        code = cli("convert", "checkpoint", str(_fifo(tmp_path / "w.pth")), "--model", "mnist_cnn")
    else:
        folder = tmp_path / "folder"
        folder.mkdir()
        save_file(_mnist_state(), folder / "model.safetensors")
        if command == "local-dir":
            _fifo(folder / "config.json")
        else:
            os.symlink("/dev/zero", folder / "config.json")
        with pytest.raises(WeightsFileError) as err:
            zoo.create_model(f"local-dir:{folder}", pretrained=True)
        assert err.value.value == str(folder / "config.json")
        return
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("zoo ") and "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "model_args",
    [
        {"pretrained": True},
        {"checkpoint_path": "/elsewhere/weights.safetensors"},
        {"pretrained_cfg_overlay": {"hf_hub_id": "evilorg/x"}},
        {"features_only": True},
        {"allow_nonfinite": True},
    ],
)
@pytest.mark.parametrize("pretrained", [False, True])
def test_a_folders_model_args_reach_only_the_builder(tmp_path, monkeypatch, model_args, pretrained):
    """M1: config.json only chooses a registered architecture and its builder's arguments: never create_model's own
    keywords, which would fetch, load or return something else."""
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # a closed port: any request would fail loudly
    state = _mnist_state()
    state["fc.weight"][0, 0] = float("nan")  # allow_nonfinite smuggled in would load these
    save_file(state, tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text(json.dumps({"architecture": "mnist_cnn", "model_args": model_args}))
    with pytest.raises(WeightsFileError) as err:
        zoo.create_model(f"local-dir:{tmp_path}", pretrained=pretrained)
    assert next(iter(model_args)) in str(err.value) and "127.0.0.1" not in str(err.value)


# ------------------------------------------------------------------------------------------ values


def test_nan_weights_are_refused_unless_allowed(tmp_path, capsys):
    state = _mnist_state()
    state["fc.weight"][3, 7] = float("nan")
    state["layer1.0.bias"][0] = float("inf")
    path = _save(tmp_path / "nan.safetensors", state)
    with pytest.raises(ValueError, match=r"fc\.weight.*layer1\.0\.bias|layer1\.0\.bias.*fc\.weight") as e:
        zoo.create_model("mnist_cnn", checkpoint_path=path)
    assert "allow_nonfinite=True" in str(e.value) and str(path) in str(e.value)
    with pytest.raises(ValueError, match=r"fc\.weight"):
        zoo.load_weights(zoo.create_model("mnist_cnn"), path)
    model = zoo.create_model("mnist_cnn", checkpoint_path=path, allow_nonfinite=True)
    assert torch.isnan(model.fc.weight[3, 7])
    assert cli("predict", "mnist_cnn", str(_digit()), "--checkpoint", str(path)) == 2
    assert "fc.weight" in capsys.readouterr().err


def test_integer_tensors_are_not_cast_silently(tmp_path):
    state = _mnist_state()
    state["fc.bias"] = torch.arange(10, dtype=torch.int64)
    path = tmp_path / "ints.safetensors"
    save_file(state, path)
    model = zoo.create_model("mnist_cnn")
    before = model.fc.bias.detach().clone()
    with pytest.raises(ValueError, match=r"fc\.bias.*int64.*float32"):
        zoo.load_weights(model, path)
    assert torch.equal(model.fc.bias, before)


# ------------------------------------------------------------------------------------------ images


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims ``width x height`` pixels (1-bit grey) and holds almost nothing: a decompression bomb."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_a_decompression_bomb_is_a_clear_error(tmp_path, capsys):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_header_only(100_000, 100_000))
    assert cli("predict", "mnist_cnn.mnist", str(bomb)) == 2
    err = capsys.readouterr().err
    assert err.startswith("zoo predict: error: ") and str(bomb) in err and "pixels" in err


def test_a_16_bit_image_is_scaled_not_clipped(tmp_path):
    eight = Image.open(_digit()).convert("L")
    sixteen = tmp_path / "digit16.png"
    Image.fromarray(np.asarray(eight).astype(np.uint16) * 257).save(sixteen)  # 255 -> 65535
    assert Image.open(sixteen).mode.startswith("I")
    loaded = load_image(sixteen)
    assert np.array_equal(np.asarray(loaded), np.asarray(eight))
    model = zoo.create_model("mnist_cnn.mnist", pretrained=True)
    assert predict(model, [loaded], topk=3) == predict(model, [eight], topk=3)


@pytest.mark.parametrize("rank", [0, 1])
@pytest.mark.parametrize("in_chans", [1, 3])
def test_a_first_convolution_of_another_rank_is_named_not_an_index_error(tmp_path, rank, in_chans):
    from zoo.errors import WeightsError
    from zoo.pretrained.files import save_weights

    state = {k: v.clone() for k, v in zoo.create_model("mnist_cnn").state_dict().items()}
    first = next(k for k, v in state.items() if v.dim() == 4)
    state[first] = state[first].flatten()[: 9 if rank else 1].reshape([9] if rank else [])
    path = save_weights(state, tmp_path / "rank.safetensors", WeightsMetadata(architecture="mnist_cnn")).path
    with pytest.raises(WeightsError) as e:  # in_chans 3 asks for the first convolution to be adapted
        zoo.create_model("mnist_cnn", checkpoint_path=path, in_chans=in_chans)
    assert first in str(e.value)
