"""Data under attack: archives that extract without end or name no member, images whose header promises a side of
millions of pixels, extractions killed half way, and data files that unpack or unpickle into something else.

Each case is built from its reproduction, small: a tar.gz whose members declare more than the budget, a 66-byte
PNG of 1 x 150,000,000 pixels, an extraction killed by SIGKILL in a real process.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import signal
import struct
import subprocess
import sys
import tarfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from synth_data import make_cifar, make_idx_dataset, make_image_folder

from zoo.data import ImageFolderDataset, create_datasets, load_idx_dataset
from zoo.data.archive import extract_archive
from zoo.data.cifar import load_cifar
from zoo.data.folder import cached_images, scan_image_folder
from zoo.data.transforms import MAX_IMAGE_SIDE, ImageTooLarge, check_image_size, create_transform
from zoo.errors import DataError
from zoo.utils.files import _TEMP_RE

CFG80 = {"input_size": (3, 80, 80), "mean": (0.5,) * 3, "std": (0.5,) * 3}  # > 64 px: the streamed loader
CFG32 = {**CFG80, "input_size": (3, 32, 32)}  # the uint8 cache's size


@pytest.fixture(autouse=True)
def data_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ZOO_DATA_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _tar_gz(path: Path, members: list[tuple[str, bytes | None]]) -> Path:
    """A tar.gz of ``(name, data)`` members: a file, or a folder where ``data`` is None."""
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.type = tarfile.DIRTYPE if data is None else tarfile.REGTYPE
            info.size = len(data or b"")
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _png(path: Path, width: int, height: int) -> Path:
    """A PNG whose header says ``width`` x ``height`` (1-bit grey) in a few bytes: its pixels are never written."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b"")
    )
    return path


def _dead_pid() -> int:
    """The id of a process that has exited."""
    return int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True).stdout)


# ------------------------------------------------------------------------------ archives: a budget, named members


def test_an_archive_past_its_extraction_budget_is_refused_and_leaves_nothing(tmp_path, data_cache, monkeypatch):
    """Reproduction: a 2 MB .tar.gz of one 2 GiB file extracted in full into the cache; here 4 MiB of zeros."""
    big = _tar_gz(tmp_path / "big.tar.gz", [("train", None), ("train/zeros.bin", bytes(4 << 20))])
    assert big.stat().st_size < 20_000
    monkeypatch.setenv("ZOO_EXTRACT_MAX_GB", str(1 / 1024))  # 1 MiB
    with pytest.raises(DataError) as e:
        extract_archive(big)
    assert (e.value.name, e.value.value) == ("member 2", "train/zeros.bin") and str(big) in str(e.value)
    assert "ZOO_EXTRACT_MAX_GB" in e.value.hint  # the budget a trusted archive may raise
    assert not data_cache.exists() or list(data_cache.iterdir()) == []  # nothing extracted, nothing left
    monkeypatch.setenv("ZOO_EXTRACT_MAX_GB", "1")
    monkeypatch.setenv("ZOO_EXTRACT_MAX_FILES", "3")
    many = _tar_gz(tmp_path / "many.tar.gz", [(f"train/{i}.png", b"x") for i in range(5)])
    with pytest.raises(DataError) as e:
        extract_archive(many)
    assert (e.value.name, e.value.value) == ("member 4", "train/3.png")
    monkeypatch.delenv("ZOO_EXTRACT_MAX_FILES")
    assert (extract_archive(big) / "train" / "zeros.bin").stat().st_size == 4 << 20  # within the default budget


def test_a_member_without_a_name_is_named_by_its_place(tmp_path):
    """Reproduction: a file member named "" failed with IsADirectoryError naming the temporary folder."""
    archive = _tar_gz(tmp_path / "noname.tar.gz", [("train/cat/0.png", b"x"), ("", b"x")])
    with pytest.raises(DataError) as e:
        extract_archive(archive)
    assert (e.value.name, e.value.value) == ("member 2", "") and str(archive) in str(e.value)
    # "." and "./" folder members, as `tar -C folder .` writes them, are no such member.
    dots = _tar_gz(tmp_path / "dots.tar.gz", [(".", None), ("./train", None), ("./train/0.png", b"x")])
    assert (extract_archive(dots) / "train" / "0.png").read_bytes() == b"x"


# ---------------------------------------------------------------- extractions killed half way are cleaned up


@pytest.mark.slow
def test_a_killed_extraction_is_named_as_every_temporary_file_and_cleaned_by_the_next(tmp_path, data_cache):
    """Reproduction: `kill -9` during an extraction left `.NAME.PID.partial` and its files for ever."""
    archive = _tar_gz(tmp_path / "photos.tar.gz", [("train", None), *((f"train/{i}.png", b"x") for i in range(50))])
    killed = "import os, signal, sys\nfrom zoo.data.archive import extract_archive\n"
    killed += "os.rename = lambda *a: os.kill(os.getpid(), signal.SIGKILL)\nextract_archive(sys.argv[1])\n"
    proc = subprocess.Popen(
        [sys.executable, "-c", killed, archive], env={**os.environ, "ZOO_DATA_DIR": str(data_cache)}
    )
    assert proc.wait() == -signal.SIGKILL
    (left,) = data_cache.iterdir()
    match = _TEMP_RE.match(left.name)
    assert match and int(match["pid"]) == proc.pid and len(list((left / "train").iterdir())) == 50
    alive = data_cache / f".other.{os.getpid()}.1.part"  # this process's own: never another run's to remove
    alive.mkdir()
    dest = extract_archive(archive)
    assert sorted(data_cache.iterdir()) == sorted([alive, dest])


def test_the_image_cache_clears_writes_killed_half_way(tmp_path, data_cache):
    make_image_folder(tmp_path / "photos", per_class=2, size=32)
    stale = data_cache / "image-cache" / f".photos-0.npy.{_dead_pid()}.1.tmp"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"half an array")
    cached = cached_images(scan_image_folder(tmp_path / "photos")[1], (32, 32))
    assert cached.path is not None and not stale.exists()


# ----------------------------------------------------------------- images bounded by their side, before decoding


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # Pillow's, at 89 million pixels
@pytest.mark.parametrize("cfg", [CFG80, CFG32], ids=["streamed", "cached"])
def test_an_image_a_pixel_wide_and_150_million_high_is_refused_unread_by_both_folder_loaders(tmp_path, cfg):
    """Reproduction: a 68-byte PNG under Pillow's pixel limit made a folder training peak at 4.5 GB."""
    make_image_folder(tmp_path / "photos", classes=("cat", "dog"), per_class=3, size=cfg["input_size"][1])
    huge = _png(tmp_path / "photos" / "dog" / "huge.png", 1, 150_000_000)
    assert huge.stat().st_size < 100 and Image.open(huge).size == (1, 150_000_000)
    with pytest.raises(DataError) as e:
        create_datasets(f"imagefolder:{tmp_path / 'photos'}", model_cfg=cfg, val_split=0.34)
    assert f"{huge}: ImageTooLarge" in str(e.value) and "1x150000000" in str(e.value)  # the file, its size
    _, _, info = create_datasets(
        f"imagefolder:{tmp_path / 'photos'}", model_cfg=cfg, val_split=0.34, strict_images=False
    )
    assert info.extra["skipped_images"] == [str(huge)]


def test_an_image_too_long_once_resized_is_refused_before_it_is_decoded(tmp_path):
    """1 x 20,000 pixels passes the side bound, but its shorter side resized to 256 makes it 256 x 5,120,000."""
    long = tmp_path / "long.png"
    Image.new("L", (1, 20_000)).save(long)
    eval_tf = create_transform({**CFG80, "input_size": (3, 224, 224), "crop_pct": 0.875})
    with pytest.raises(ImageTooLarge) as e:
        ImageFolderDataset([(str(long), 0)], ["line"], eval_tf)[0]
    assert str(long) in str(e.value) and "5,120,000" in str(e.value)
    assert ImageFolderDataset([(str(long), 0)], ["line"])[0][0].size == (1, 20_000)  # no resize: it is read
    with Image.open(long) as im:  # the helper predict uses, with the side its transform resizes to
        with pytest.raises(ImageTooLarge):
            check_image_size(im, 256)
        assert check_image_size(im) is im
    with Image.open(_png(tmp_path / "wide.png", MAX_IMAGE_SIDE + 1, 1)) as im, pytest.raises(ImageTooLarge):
        check_image_size(im)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_predict_refuses_images_too_long_before_or_once_resized(tmp_path):
    """Reproduction: the 68-byte 1 x 150,000,000 PNG made `zoo predict` raise OverflowError at 3 GB RSS."""
    import zoo
    from zoo.predict import load_image, predict

    with pytest.raises(ImageTooLarge) as e:
        load_image(_png(tmp_path / "huge.png", 1, 150_000_000))
    assert str(tmp_path / "huge.png") in str(e.value)
    Image.new("L", (1, 20_000)).save(tmp_path / "long.png")
    model = zoo.create_model("resnet20", num_classes=3)  # resizes the shorter side to 32
    with pytest.raises(ImageTooLarge) as e:
        predict(model, [load_image(tmp_path / "long.png")])
    assert "image 1" in str(e.value) and "640,000" in str(e.value)


# ------------------------------------------------------------------- data files that unpack into something else


def test_a_gzipped_idx_file_is_read_with_a_bound(tmp_path, monkeypatch):
    """A few MB of gzip can hold GBs: the IDX reader stops at its bound instead of unpacking it all."""
    from zoo.data import idx

    folder = make_idx_dataset(tmp_path / "MNIST" / "raw", n_train=20, n_test=10)
    monkeypatch.setattr(idx, "_IDX_LIMIT", 10_000)  # 20 images of 28x28 are 15,696 bytes
    with pytest.raises(DataError) as e:
        load_idx_dataset("mnist", tmp_path, "train")
    assert str(folder / "train-images-idx3-ubyte.gz") in str(e.value)
    bomb = gzip.compress(bytes(20_000))
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(bomb)
    with pytest.raises(DataError) as e:
        load_idx_dataset("mnist", tmp_path, "test")
    assert str(folder / "t10k-labels-idx1-ubyte.gz") in str(e.value)


class _Runs:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_cifar_batch_that_names_a_function_is_refused_unrun(tmp_path):
    """A pickle may name any function for loading it to call: a CIFAR batch holds dicts, lists and arrays only."""
    folder = make_cifar(tmp_path, "cifar10", per_batch=4, n_test=4)
    marker = tmp_path / "ran"
    entry = {"data": np.zeros((4, 3072), np.uint8), "labels": [0, 1, 2, 3], "x": _Runs(marker)}
    (folder / "test_batch").write_bytes(pickle.dumps(entry))
    with pytest.raises(DataError) as e:
        load_cifar("cifar10", tmp_path, "test")
    assert str(folder) in str(e.value) and "system" in str(e.value)  # the folder, and the function it names
    assert not marker.exists()
    assert len(load_cifar("cifar10", tmp_path, "train")) == 20  # numpy arrays still load
