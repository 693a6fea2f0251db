"""CIFAR-10 in both real layouts: torchvision's pickled batches and the JPEG image folder (also as its tar.gz),
safe extraction into zoo's data cache, and image folders evaluated on their own val/ or test/ split.

The real archive (../shared/data/CIFAR10/cifar10-jpg.tar.gz) is used when it is there; those tests skip
without it. They work on small subsets, so that each takes about a second.
"""

from __future__ import annotations

import collections
import io
import json
import os
import pickle
import tarfile

import numpy as np
import pytest
import torch
from helpers import SHARED_DATA
from synth_data import make_cifar, make_image_folder

from zoo.cli import main as cli_main
from zoo.data import TensorImageDataset, create_datasets
from zoo.data.archive import extract_archive
from zoo.errors import DataError

ARCHIVE = SHARED_DATA / "CIFAR10" / "cifar10-jpg.tar.gz"
# CIFAR-10's label order (batches.meta), which is also the alphabetical order of the archive's class folders.
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@pytest.fixture(scope="module")
def real_archive(tmp_path_factory):
    """The real archive read once for this file: the number of files per (split, class), and the first
    6 training and 3 test images of every class written out (extracting all 60,000 files takes seconds to
    minutes, depending on the disk)."""
    if not ARCHIVE.is_file():
        pytest.skip(f"real CIFAR-10 archive not found at {ARCHIVE} (set ZOO_SHARED_DATA)")
    dest = tmp_path_factory.mktemp("real")
    counts: collections.Counter = collections.Counter()
    with tarfile.open(ARCHIVE, "r|gz") as tar:
        for member in tar:
            if not member.isfile():
                continue
            split, cls, name = member.name.split("/")
            counts[split, cls] += 1
            if counts[split, cls] <= (6 if split == "train" else 3):
                (dest / split / cls).mkdir(parents=True, exist_ok=True)
                (dest / split / cls / name).write_bytes(tar.extractfile(member).read())
    return dest, counts


@pytest.fixture
def real_cifar(real_archive):
    return real_archive[0]


@pytest.fixture
def data_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_DATA_DIR", str(tmp_path / "zoo-data"))
    return tmp_path / "zoo-data"


def real_subset(real_cifar, dest, train_per_class=5, test_per_class=2):
    """A CIFAR-10 folder of the first images of each class: hard links to the real files."""
    for split, n in (("train", train_per_class), ("test", test_per_class)):
        for cls in CIFAR10_CLASSES:
            (dest / split / cls).mkdir(parents=True)
            for f in sorted((real_cifar / split / cls).iterdir())[:n]:
                os.link(f, dest / split / cls / f.name)
    return dest


def tar_gz(folder, path):
    with tarfile.open(path, "w:gz") as tar:
        for split in ("train", "test"):
            tar.add(folder / split, arcname=split)
    return path


def forbid_extraction(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the archive was extracted again")

    monkeypatch.setattr(tarfile, "open", refuse)


@pytest.mark.slow
@pytest.mark.realdata
def test_the_real_archive_is_cifar10(real_archive):
    _, counts = real_archive
    expected = {("train", c): 5000 for c in CIFAR10_CLASSES} | {("test", c): 1000 for c in CIFAR10_CLASSES}
    assert dict(counts) == expected


@pytest.mark.realdata
def test_data_dir_takes_the_tar_gz_itself_and_extracts_it_once(real_cifar, tmp_path, data_cache, monkeypatch):
    archive = tar_gz(real_subset(real_cifar, tmp_path / "subset"), tmp_path / "cifar10-jpg.tar.gz")
    train, val, info = create_datasets("cifar10", str(archive))
    assert isinstance(train, TensorImageDataset) and isinstance(val, TensorImageDataset)
    assert (len(train), len(val)) == (50, 20) and info.classes == CIFAR10_CLASSES
    assert info.root.startswith(str(data_cache)) and "test" in info.extra["layout"]
    assert sorted(train.targets.tolist()) == sorted(list(range(10)) * 5)
    # The extracted folder is found again: no second extraction, whether the archive or its folder is given.
    forbid_extraction(monkeypatch)
    for data_dir in (archive, tmp_path):
        again, _, info_again = create_datasets("cifar10", str(data_dir))
        assert info_again.root == info.root and torch.equal(again.images, train.images)


@pytest.mark.realdata
def test_both_layouts_give_the_same_training_images(real_cifar, tmp_path, data_cache):
    """The decoded JPEGs written as torchvision's pickled batches load to the same tensors and labels."""
    folder = real_subset(real_cifar, tmp_path / "jpg", train_per_class=5, test_per_class=1)
    from_folder, val_folder, info = create_datasets("cifar10", str(folder))
    batches = tmp_path / "pickled" / "cifar-10-batches-py"
    batches.mkdir(parents=True)
    rows = from_folder.images.numpy().reshape(len(from_folder), -1)  # R plane, G plane, B plane per row
    labels = from_folder.targets.tolist()
    for i in range(5):
        with open(batches / f"data_batch_{i + 1}", "wb") as f:
            pickle.dump({"data": rows[i * 10 : (i + 1) * 10], "labels": labels[i * 10 : (i + 1) * 10]}, f)
    with open(batches / "test_batch", "wb") as f:
        pickle.dump({"data": val_folder.images.numpy().reshape(10, -1), "labels": val_folder.targets.tolist()}, f)
    with open(batches / "batches.meta", "wb") as f:
        pickle.dump({"label_names": CIFAR10_CLASSES}, f)
    from_batches, val_batches, info_b = create_datasets("cifar10", str(tmp_path / "pickled"))
    assert isinstance(from_batches, TensorImageDataset) and info_b.classes == info.classes
    assert torch.equal(from_batches.images, from_folder.images) and torch.equal(
        from_batches.targets, from_folder.targets
    )
    assert torch.allclose(val_batches[3][0], val_folder[3][0], atol=1e-6)


@pytest.mark.slow
@pytest.mark.realdata
def test_zoo_train_on_the_real_images_evaluates_on_their_test_split(real_cifar, tmp_path, data_cache):
    archive = tar_gz(real_subset(real_cifar, tmp_path / "subset", 4, 2), tmp_path / "cifar10-jpg.tar.gz")
    run = tmp_path / "run"
    argv = ["train", "resnet20", "--dataset", "cifar10", "--data-dir", str(archive), "--epochs", "1",
            "--batch-size", "20", "--output", str(run)]  # fmt: skip
    assert cli_main(argv) == 0
    record = json.loads((run / "run.json").read_text())
    assert record["train_images"] == 40 and record["val_images"] == 0 and record["test_images"] == 20
    assert record["data"]["layout"].endswith("test") and record["dataset_kind"] == "cifar10"
    assert record["recipe"]["rand_augment"]  # the cifar10 recipe's RandAugment ran on the batches


def test_pickled_batches_train_as_tensors(tmp_path):
    folder = make_cifar(tmp_path, "cifar10", per_batch=4, n_test=4)
    train, val, info = create_datasets("cifar10", str(tmp_path))
    assert isinstance(train, TensorImageDataset) and len(train) == 20 and info.extra["layout"] == "batches"
    with open(folder / "data_batch_2", "rb") as f:
        entry = pickle.load(f)
    assert torch.equal(train.images[4], torch.from_numpy(entry["data"][0].reshape(3, 32, 32)))
    assert int(train.targets[4]) == entry["labels"][0]


def test_image_folders_evaluate_on_their_val_or_test_split(tmp_path, data_cache):
    make_image_folder(tmp_path / "ds" / "train", per_class=4, size=32)
    make_image_folder(tmp_path / "ds" / "test", per_class=2, size=32)
    cfg = {"input_size": (3, 32, 32), "mean": (0.5,) * 3, "std": (0.5,) * 3}
    train, val, info = create_datasets("imagefolder:" + str(tmp_path / "ds"), model_cfg=cfg)
    assert (len(train), len(val)) == (12, 6) and info.extra["layout"].endswith("test")
    make_image_folder(tmp_path / "ds" / "val", per_class=1, size=32)  # a validation split wins over test/
    train, val, info = create_datasets("imagefolder:" + str(tmp_path / "ds"), model_cfg=cfg)
    assert (len(train), len(val)) == (12, 3) and info.extra["layout"].endswith("val")


def test_cifar_folders_that_are_not_cifar_are_clear_errors(tmp_path, data_cache):
    make_image_folder(tmp_path / "three" / "train", per_class=1, size=32)
    make_image_folder(tmp_path / "three" / "test", per_class=1, size=32)
    with pytest.raises(DataError) as e:
        create_datasets("cifar10", str(tmp_path / "three"))
    assert str(tmp_path / "three") in str(e.value) and " 3" in str(e.value)  # its 3 class folders, not CIFAR-10's 10
    classes = [f"c{i}" for i in range(10)]
    make_image_folder(tmp_path / "big" / "train", classes=classes, per_class=1, size=40)
    make_image_folder(tmp_path / "big" / "test", classes=classes, per_class=1, size=40)
    with pytest.raises(DataError) as e:
        create_datasets("cifar10", str(tmp_path / "big"))
    assert str(tmp_path / "big" / "train" / "c0" / "img0.png") in str(e.value) and "40x40" in str(e.value)
    assert f"--dataset imagefolder:{tmp_path / 'big'}" in e.value.hint  # the other way to read them
    (tmp_path / "nothing").mkdir()
    with pytest.raises(FileNotFoundError) as e:
        create_datasets("cifar10", str(tmp_path / "nothing"))
    assert "data_batch_1" in str(e.value) and str(tmp_path / "nothing" / "cifar-10-batches-py") in str(e.value)


def _archive_with(tmp_path, member: tarfile.TarInfo, data: bytes = b"x") -> object:
    path = tmp_path / "evil.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        ok = tarfile.TarInfo("train/cat/0000.jpg")
        ok.size = 1
        tar.addfile(ok, io.BytesIO(b"x"))
        tar.addfile(member, io.BytesIO(data) if member.isfile() else None)
    return path


@pytest.mark.parametrize(
    "name, kind",
    [("/tmp/zoo-absolute.jpg", tarfile.REGTYPE), ("train/../../escaped.jpg", tarfile.REGTYPE),
     ("train/cat/link.jpg", tarfile.SYMTYPE), ("train/cat/hard.jpg", tarfile.LNKTYPE)],
)  # fmt: skip
def test_unsafe_archives_are_refused_and_leave_nothing_behind(tmp_path, data_cache, name, kind):
    member = tarfile.TarInfo(name)
    member.type = kind
    if kind == tarfile.REGTYPE:
        member.size = 1
    else:
        member.linkname = "../../../etc/passwd" if kind == tarfile.SYMTYPE else "/etc/passwd"
    archive = _archive_with(tmp_path, member)
    dest = tmp_path / "out" / "dest"
    with pytest.raises(DataError) as e:
        extract_archive(archive, dest)
    assert repr(name) in str(e.value) and str(archive) in str(e.value)
    assert not dest.exists() and list((tmp_path / "out").iterdir()) == []
    assert not (tmp_path / "escaped.jpg").exists() and not os.path.exists("/tmp/zoo-absolute.jpg")
    with pytest.raises(DataError) as e:
        create_datasets("cifar10", str(archive))
    assert repr(name) in str(e.value)


def test_extract_archive_defaults_to_the_data_cache_and_reuses_it(tmp_path, data_cache, monkeypatch):
    make_image_folder(tmp_path / "src" / "train", per_class=1, size=8)
    make_image_folder(tmp_path / "src" / "test", per_class=1, size=8)
    archive = tar_gz(tmp_path / "src", tmp_path / "photos.tar.gz")
    dest = extract_archive(archive)
    assert dest.parent == data_cache and dest.name.startswith("photos-")
    assert sorted(p.name for p in (dest / "train").iterdir()) == ["cat", "dog", "fish"]
    assert not [p for p in data_cache.iterdir() if p.name.startswith(".")]  # no temporary folder left
    real_open = tarfile.open
    forbid_extraction(monkeypatch)
    assert extract_archive(archive) == dest
    monkeypatch.setattr(tarfile, "open", real_open)
    (tmp_path / "not.tar.gz").write_bytes(b"plain bytes")
    with pytest.raises(DataError) as e:
        extract_archive(tmp_path / "not.tar.gz")
    assert str(tmp_path / "not.tar.gz") in str(e.value)


def test_an_archive_replaced_under_its_name_is_extracted_anew(tmp_path, data_cache):
    """The archive's hash names its extraction and is computed once per process for an unchanged file: a new file
    under the same name (other size, newer mtime) is hashed again and never served the old extraction."""
    for split in ("train", "test"):
        make_image_folder(tmp_path / "src" / split, classes=("cat", "dog"), per_class=1, size=8)
    archive = tar_gz(tmp_path / "src", tmp_path / "photos.tar.gz")
    first = extract_archive(archive)
    make_image_folder(tmp_path / "src" / "train", classes=("horse",), per_class=2, size=8)
    tar_gz(tmp_path / "src", archive)
    second = extract_archive(archive)
    assert second != first and sorted(p.name for p in (second / "train").iterdir()) == ["cat", "dog", "horse"]
    assert sorted(p.name for p in (first / "train").iterdir()) == ["cat", "dog"]


def test_archive_layouts_for_imagefolder_too(tmp_path, data_cache):
    make_image_folder(tmp_path / "src" / "train", per_class=2, size=32)
    make_image_folder(tmp_path / "src" / "val", per_class=1, size=32)
    with tarfile.open(tmp_path / "photos.tgz", "w:gz") as tar:
        tar.add(tmp_path / "src" / "train", arcname="train")
        tar.add(tmp_path / "src" / "val", arcname="val")
    cfg = {"input_size": (3, 32, 32), "mean": (0.5,) * 3, "std": (0.5,) * 3}
    train, val, info = create_datasets("imagefolder:" + str(tmp_path / "photos.tgz"), model_cfg=cfg)
    assert (len(train), len(val)) == (6, 3) and info.root.startswith(str(data_cache))
    assert np.array_equal(sorted(val.targets.tolist()), [0, 1, 2])
