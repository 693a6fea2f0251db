"""Datasets in their real on-disk formats: IDX (gz or raw, four layouts), CIFAR pickles, image folders."""

from __future__ import annotations

import gzip
import itertools
import os
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from synth_data import IDX_NAMES, make_cifar, make_idx_dataset, make_image_folder, write_idx

from zoo.data import (
    KINDS,
    DatasetSpec,
    TensorImageDataset,
    TensorLoader,
    create_datasets,
    dataset_shape,
    find_idx_files,
    load_idx_dataset,
    parse_dataset,
    read_idx,
)
from zoo.data.cifar import load_cifar
from zoo.data.idx import FASHION_MNIST_CLASSES
from zoo.errors import DataError
from zoo.utils.checks import Invalid

# ----------------------------------------------------------------------------------------------------- IDX


@pytest.mark.parametrize("gz", [True, False])
def test_read_idx_round_trip(tmp_path, gz):
    arr = np.random.default_rng(0).integers(0, 256, size=(7, 5, 3), dtype=np.uint8)
    path = write_idx(tmp_path / "x-idx3-ubyte", arr, gz=gz)
    out = read_idx(path)
    assert out.dtype == torch.uint8 and tuple(out.shape) == (7, 5, 3)
    assert np.array_equal(out.numpy(), arr)


def test_read_idx_rejects_bad_magic_and_truncation(tmp_path):
    bad = tmp_path / "bad-idx3-ubyte"
    bad.write_bytes(b"\x12\x34\x08\x01" + b"\x00" * 8)
    with pytest.raises(DataError) as e:
        read_idx(bad)
    assert str(bad) in str(e.value)
    good = write_idx(tmp_path / "t-idx1-ubyte", np.arange(10, dtype=np.uint8), gz=False)
    short = tmp_path / "short-idx1-ubyte.gz"
    short.write_bytes(gzip.compress(good.read_bytes()[:-3]))
    with pytest.raises(DataError) as e:
        read_idx(short)
    assert str(short) in str(e.value) and "(10,)" in str(e.value)  # the shape its header promises


@pytest.mark.parametrize("layout", ["raw_itself", "dataset_folder", "root", "debian"])
def test_idx_layouts(tmp_path, layout):
    name = "fashion_mnist" if layout == "debian" else "mnist"
    files_dir = {
        "raw_itself": tmp_path / "MNIST" / "raw",
        "dataset_folder": tmp_path / "MNIST" / "raw",
        "root": tmp_path / "MNIST" / "raw",
        "debian": tmp_path / "fashion-mnist",
    }[layout]
    data_dir = {
        "raw_itself": files_dir,
        "dataset_folder": tmp_path / "MNIST",
        "root": tmp_path,
        "debian": files_dir,
    }[layout]
    make_idx_dataset(files_dir, n_train=30, n_test=20, gz=layout != "debian")
    found = find_idx_files(name, data_dir)
    assert found["train"][0].parent == files_dir
    train = load_idx_dataset(name, data_dir, "train")
    test = load_idx_dataset(name, data_dir, "test")
    assert tuple(train.images.shape) == (30, 1, 28, 28) and tuple(test.images.shape) == (20, 1, 28, 28)
    assert train.images.dtype == torch.uint8
    expected = list(FASHION_MNIST_CLASSES) if name == "fashion_mnist" else [str(i) for i in range(10)]
    assert train.classes == expected
    # Labels are read from the file as written.
    labels = read_idx(files_dir / (IDX_NAMES["train"][1] + ("" if layout == "debian" else ".gz")))
    assert torch.equal(train.targets, labels.long())


def test_missing_idx_names_files_and_folders(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        load_idx_dataset("mnist", tmp_path, "train")
    msg = str(e.value)
    for stem in (
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ):
        assert stem in msg
    assert str(tmp_path / "MNIST" / "raw") in msg


def test_partial_idx_dataset_names_missing_file(tmp_path):
    make_idx_dataset(tmp_path, n_train=10, n_test=10)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError) as e:
        load_idx_dataset("mnist", tmp_path, "test")
    assert "t10k-labels-idx1-ubyte" in str(e.value) and "t10k-images-idx3-ubyte" not in str(e.value)


def test_mismatched_label_count(tmp_path):
    make_idx_dataset(tmp_path, n_train=10, n_test=10)
    labels = write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(9, dtype=np.uint8))
    with pytest.raises(DataError) as e:
        load_idx_dataset("mnist", tmp_path, "train")
    assert str(labels) in str(e.value)


# ------------------------------------------------------------------------------------------ TensorLoader


def _tiny(n=23, c=1, size=6):
    g = torch.Generator().manual_seed(0)
    images = torch.randint(1, 256, (n, c, size, size), dtype=torch.uint8, generator=g)
    return TensorImageDataset(images, torch.arange(n) % 3, ["a", "b", "c"], (0.5,) * c, (0.25,) * c)


def test_tensor_loader_order_is_a_seeded_permutation_per_epoch():
    ds = _tiny()
    loader = TensorLoader(ds, 5, shuffle=True, seed=3)

    def epoch_targets(e):
        loader.set_epoch(e)
        xs = torch.cat([x for x, _ in loader])
        return xs

    e0, e0_again, e1 = epoch_targets(0), epoch_targets(0), epoch_targets(1)
    assert torch.equal(e0, e0_again) and not torch.equal(e0, e1)
    # Every image exactly once, normalised with the dataset's statistics.
    ref = (ds.images.float() / 255 - 0.5) / 0.25
    assert sorted(e0.flatten(1).sum(1).tolist()) == pytest.approx(sorted(ref.flatten(1).sum(1).tolist()))
    assert len(loader) == 5


def test_tensor_loader_normalises_each_channel_with_its_own_statistics():
    """The loader keeps the statistics on its device once; each channel still gets its own mean and std,
    the same as indexing the dataset image by image."""
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (7, 3, 4, 4), dtype=torch.uint8, generator=g)
    mean, std = (0.1, 0.5, 0.9), (0.2, 0.3, 0.4)
    ds = TensorImageDataset(images, torch.arange(7) % 3, ["a", "b", "c"], mean, std)
    (x, _), *rest = list(TensorLoader(ds, 7))
    ref = (images.float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    assert not rest and torch.allclose(x, ref, atol=1e-6)
    assert all(torch.allclose(x[i], ds[i][0], atol=1e-6) for i in range(7))


def test_tensor_loader_skip_resumes_the_same_batches():
    ds = _tiny()
    loader = TensorLoader(ds, 4, shuffle=True, shift=1, hflip=0.5, seed=1)
    loader.set_epoch(2)
    full = list(loader)
    loader.set_epoch(2, start_batch=3)
    rest = list(loader)
    assert len(rest) == len(full) - 3
    for (a, ya), (b, yb) in zip(full[3:], rest, strict=True):
        assert torch.equal(a, b) and torch.equal(ya, yb)


def test_random_shift_is_a_translation_of_each_image():
    ds = _tiny(n=16, c=2, size=8)
    loader = TensorLoader(ds, 16, shift=2, seed=0)
    ((x, _),) = list(loader)
    raw = ds.images.float()
    shifted = x * 0.25 + 0.5  # back to [0, 1]
    seen = set()
    for i in range(16):
        matches = []
        for dy, dx in itertools.product(range(-2, 3), repeat=2):
            padded = F.pad(raw[i], (2, 2, 2, 2))
            window = padded[:, 2 + dy : 2 + dy + 8, 2 + dx : 2 + dx + 8] / 255
            if torch.allclose(window, shifted[i], atol=1e-6):
                matches.append((dy, dx))
        assert matches, f"image {i} is not a translation of its source"
        seen.add(matches[0])
    assert len(seen) > 3  # offsets differ between images


def test_hflip_and_rank_sharding():
    ds = _tiny(n=11)
    x_flip = torch.cat([b for b, _ in TensorLoader(ds, 11, hflip=1.0)])
    x = torch.cat([b for b, _ in TensorLoader(ds, 11)])
    assert torch.equal(x_flip, x.flip(3))
    shards = [TensorLoader(ds, 4, shuffle=True, seed=5, rank=r, world_size=2) for r in range(2)]
    got = [torch.cat([y for _, y in s]) for s in shards]
    assert len(got[0]) == len(got[1]) == 6  # 11 padded to 12, split in two
    eval_shards = [TensorLoader(ds, 4, rank=r, world_size=2, pad=False) for r in range(2)]
    seen = torch.cat([torch.cat([x for x, _ in s]) for s in eval_shards])
    assert len(seen) == 11


def test_a_batch_size_below_one_is_refused():
    for size in (0, -4, 2.5, True):
        with pytest.raises(Invalid) as e:
            TensorLoader(_tiny(), size)
        assert (e.value.name, e.value.value) == ("batch_size", size)


def test_ranks_augment_their_shares_differently():
    # Every image the same: whatever differs between the ranks' batches is their augmentation.
    images = torch.full((16, 1, 8, 8), 7, dtype=torch.uint8)
    images[:, :, 2:5, 1:3] = 250
    ds = TensorImageDataset(images, torch.zeros(16, dtype=torch.long), ["a"], (0.5,), (0.25,))
    batches = [
        list(TensorLoader(ds, 8, shuffle=True, shift=2, hflip=0.5, seed=3, rank=r, world_size=2)) for r in (0, 1)
    ]
    assert not torch.equal(batches[0][0][0], batches[1][0][0])
    # Rank 0 keeps the single-process stream; each rank's stream is reproducible.
    single = list(TensorLoader(ds, 8, shuffle=True, shift=2, hflip=0.5, seed=3))
    assert torch.equal(single[0][0], batches[0][0][0])
    again = list(TensorLoader(ds, 8, shuffle=True, shift=2, hflip=0.5, seed=3, rank=1, world_size=2))
    assert torch.equal(again[0][0], batches[1][0][0])


def test_pretrained_normalisation_fits_the_dataset_channels(tmp_path):
    make_idx_dataset(tmp_path, n_train=10, n_test=10)
    imagenet = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    train, val, _ = create_datasets("mnist", str(tmp_path), normalization=imagenet)
    # RGB statistics on grey digits: their mean, as the adapted first convolution sums its channels.
    assert train.mean == val.mean == (round(sum(imagenet[0]) / 3, 4),) and len(train.std) == 1
    assert train[0][0].shape == (1, 28, 28)


# -------------------------------------------------------------------------------------------------- CIFAR


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_pickle_batches(tmp_path, name):
    folder = make_cifar(tmp_path, name, per_batch=6, n_test=8)
    train = load_cifar(name, tmp_path, "train")
    test = load_cifar(name, folder, "test")  # the batches folder itself works too
    assert isinstance(train, TensorImageDataset) and isinstance(test, TensorImageDataset)
    assert len(train) == (30 if name == "cifar10" else 6) and len(test) == 8
    assert train.images.shape[1:] == (3, 32, 32) and train.mean == KINDS[name].mean
    assert len(train.classes) == (10 if name == "cifar10" else 100)
    # The red plane of the first row is the image's channel 0.
    import pickle

    with open(folder / ("test_batch" if name == "cifar10" else "test"), "rb") as f:
        entry = pickle.load(f)
    assert np.array_equal(test.images[0][0].numpy(), entry["data"][0][:1024].reshape(32, 32))
    label = entry["labels" if name == "cifar10" else "fine_labels"][0]
    assert int(test.targets[0]) == label
    # With a transform, its images are PIL images, one at a time.
    img, got = load_cifar(name, folder, "test", transform=lambda im: im)[0]
    assert img.size == (32, 32) and img.mode == "RGB" and got == label
    assert np.array_equal(np.asarray(img)[..., 0], entry["data"][0][:1024].reshape(32, 32))


def test_cifar_missing_lists_files(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        load_cifar("cifar10", tmp_path, "train")
    msg = str(e.value)
    assert "data_batch_1" in msg and "test_batch" in msg and "batches.meta" in msg
    assert str(tmp_path / "cifar-10-batches-py") in msg and "--download" in msg  # the option that fetches them


def test_cifar_malformed_batch(tmp_path):
    folder = make_cifar(tmp_path, "cifar10", per_batch=4, n_test=4)
    (folder / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(DataError) as e:
        load_cifar("cifar10", tmp_path, "train")
    assert str(folder) in str(e.value)


def test_cifar_create_datasets_transforms(tmp_path):
    from zoo.data import Augment, TransformedImages
    from zoo.data.transforms import create_transform

    make_cifar(tmp_path, "cifar10", per_batch=4, n_test=4)
    train, val, info = create_datasets("cifar10", str(tmp_path), augment=Augment(crop_pad=4, hflip=0.5))
    assert isinstance(train, TensorImageDataset) and isinstance(val, TensorImageDataset)  # augmented by the loader
    x, y = train[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32
    assert info.num_classes == 10 and info.in_chans == 3 and info.classes == [f"class{i}" for i in range(10)]
    xv, _ = val[0]
    raw = val.images[0].float() / 255
    mean, std = torch.tensor(info.mean).view(3, 1, 1), torch.tensor(info.std).view(3, 1, 1)
    assert torch.allclose(xv, (raw - mean) / std, atol=1e-5)
    # A caller's eval transform (pretrained weights' own) reads the same test images one at a time.
    cfg = {"input_size": (3, 32, 32), "mean": info.mean, "std": info.std, "crop_pct": 1.0}
    _, per_sample, _ = create_datasets("cifar10", str(tmp_path), eval_transform=create_transform(cfg), splits=("val",))
    assert isinstance(per_sample, TransformedImages) and len(per_sample) == len(val)
    assert all(torch.allclose(per_sample[i][0], val[i][0], atol=1e-6) for i in range(len(val)))
    assert [per_sample[i][1] for i in range(len(val))] == val.targets.tolist()


def test_the_dataset_spec_is_parsed_once_and_read_by_the_table(tmp_path):
    make_idx_dataset(tmp_path, n_train=10, n_test=10)
    spec = parse_dataset("Fashion-MNIST", str(tmp_path))
    assert spec == DatasetSpec("fashion_mnist", tmp_path) and parse_dataset(spec) is spec
    kind, folder = spec  # still the (kind, folder) pair
    assert (kind, folder) == ("fashion_mnist", tmp_path) and spec.kind is KINDS["fashion_mnist"]
    assert dataset_shape(spec) == dataset_shape("mnist", str(tmp_path)) == (10, 1)
    assert dataset_shape("cifar100", str(tmp_path)) == (100, 3)
    train, val, info = create_datasets(spec)
    assert (info.name, info.mean, info.input_size) == ("fashion_mnist", KINDS["fashion_mnist"].mean, (1, 28, 28))
    assert len(train) == len(val) == 10
    with pytest.raises(Invalid) as e:
        create_datasets(spec, val_split=0.2)  # an official test split exists
    assert (e.value.name, e.value.value) == ("--val-split", 0.2)


# ------------------------------------------------------------------------------------------- image folders


def _corrupt_files(folder):
    bad_jpg = folder / "cat" / "broken.jpg"
    bad_jpg.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    png = next((folder / "dog").glob("*.png"))
    truncated = folder / "dog" / "truncated.png"
    truncated.write_bytes(png.read_bytes()[:60])
    return bad_jpg, truncated


def test_image_folder_skips_corrupt_files_when_asked_and_reports_them(tmp_path, capsys):
    good = make_image_folder(tmp_path / "photos", per_class=6)
    bad = _corrupt_files(tmp_path / "photos")
    cfg = {"input_size": (3, 16, 16), "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5), "crop_pct": 1.0}
    photos = "imagefolder:" + str(tmp_path / "photos")
    train, val, info = create_datasets(photos, model_cfg=cfg, val_split=0.34, seed=1, strict_images=False)
    err = capsys.readouterr().err
    for p in bad:
        assert str(p) in err
    assert info.classes == ["cat", "dog", "fish"] and info.num_classes == 3
    paths = {p for p, _ in train.samples} | {p for p, _ in val.samples}
    assert paths == {str(p) for p in good}
    assert not {p for p, _ in train.samples} & {p for p, _ in val.samples}
    assert sorted(t for _, t in val.samples) == [0, 0, 1, 1, 2, 2]  # 6 * 0.34 -> 2 per class
    x, y = val[0]
    assert x.shape == (3, 16, 16)
    # Same seed, same split; another seed, another split.
    again = {"model_cfg": cfg, "val_split": 0.34, "strict_images": False}
    _, val_again, _ = create_datasets("imagefolder:" + str(tmp_path / "photos"), seed=1, **again)
    _, val_other, _ = create_datasets("imagefolder:" + str(tmp_path / "photos"), seed=2, **again)
    assert val_again.samples == val.samples and val_other.samples != val.samples
    assert set(info.extra["skipped_images"]) == {str(p) for p in bad}


def test_image_folder_with_a_corrupt_file_fails_naming_it_by_default(tmp_path):
    make_image_folder(tmp_path / "photos", per_class=3)
    bad, _ = _corrupt_files(tmp_path / "photos")
    with pytest.raises(DataError) as e:
        create_datasets("imagefolder", str(tmp_path / "photos"))
    assert str(bad) in str(e.value) and "--skip-bad-images" in e.value.hint  # the option that leaves it out


def test_image_folder_train_val_trees_and_worker_safety(tmp_path):
    make_image_folder(tmp_path / "ds" / "train", per_class=4)
    make_image_folder(tmp_path / "ds" / "val", classes=("cat", "fish"), per_class=2)
    cfg = {"input_size": (3, 12, 12), "mean": (0.5,) * 3, "std": (0.5,) * 3}
    train, val, info = create_datasets("imagefolder", str(tmp_path / "ds"), model_cfg=cfg)
    assert len(train) == 12 and len(val) == 4
    assert sorted({t for _, t in val.samples}) == [0, 2]  # val's classes map onto train's indices
    assert "train" in info.extra["layout"]
    # A file that breaks after the check is an error that names it, in the workers too: never another
    # image read in its place under its label.
    broken = train.samples[1][0]
    with open(broken, "wb") as f:
        f.write(b"garbage")
    loader = torch.utils.data.DataLoader(train, batch_size=4, num_workers=2)
    with pytest.raises(DataError, match=re.escape(broken)):
        list(loader)
    with pytest.raises(DataError) as e:
        train[1]
    assert broken in str(e.value)
    assert train[2][1] == train.samples[2][1]


def test_image_folder_lists_what_torchvision_lists(tmp_path):
    from torchvision.datasets import ImageFolder
    from torchvision.datasets.folder import IMG_EXTENSIONS as TORCHVISION_EXTENSIONS

    from zoo.data.folder import IMG_EXTENSIONS, scan_image_folder

    make_image_folder(tmp_path / "photos", per_class=3)
    (tmp_path / "photos" / "dog" / "nested").mkdir()
    make_image_folder(tmp_path / "photos" / "dog" / "nested", classes=("x",), per_class=2)
    (tmp_path / "photos" / "cat" / "notes.txt").write_text("not an image")
    classes, samples = scan_image_folder(tmp_path / "photos")
    reference = ImageFolder(str(tmp_path / "photos"))
    assert classes == reference.classes and samples == reference.samples
    assert IMG_EXTENSIONS == TORCHVISION_EXTENSIONS
    (tmp_path / "photos" / ".ipynb_checkpoints").mkdir()  # a hidden folder is no class
    assert scan_image_folder(tmp_path / "photos")[0] == ["cat", "dog", "fish"]


def test_image_folder_errors(tmp_path):
    for folder in ("empty", "nowhere"):
        (tmp_path / "empty").mkdir(exist_ok=True)
        with pytest.raises(FileNotFoundError) as e:
            create_datasets("imagefolder:" + str(tmp_path / folder))
        assert str(tmp_path / folder) in str(e.value)
    for args, name, value in (
        (("svhn", str(tmp_path)), "--dataset", "svhn"),
        (("mnist", None), "--data-dir", None),
        (("mnist:" + str(tmp_path), None), "--dataset", "mnist:" + str(tmp_path)),
    ):
        with pytest.raises(Invalid) as e:
            create_datasets(*args)
        assert (e.value.name, e.value.value) == (name, value)


def test_a_folder_that_cannot_train_a_classifier_is_refused(tmp_path):
    make_image_folder(tmp_path / "one", classes=("cat",), per_class=4)
    with pytest.raises(DataError) as e:
        create_datasets("imagefolder:" + str(tmp_path / "one"))
    assert str(tmp_path / "one") in str(e.value) and "(cat)" in str(e.value)  # the folder and its one class
    make_image_folder(tmp_path / "gap", classes=("cat", "dog"), per_class=4)
    (tmp_path / "gap" / "fish").mkdir()
    with pytest.raises(DataError) as e:
        create_datasets("imagefolder:" + str(tmp_path / "gap"))
    assert str(tmp_path / "gap") in str(e.value) and " fish " in str(e.value)  # the folder and its empty class


def test_links_in_an_image_folder_neither_hang_nor_repeat_images(tmp_path):
    from zoo.data.folder import scan_image_folder

    photos = tmp_path / "photos"
    make_image_folder(photos, classes=("cat", "dog"), per_class=4)
    plain = scan_image_folder(photos)
    (photos / "cat" / "loop").symlink_to(photos / "cat")  # a loop: walking it never ends
    (photos / "cat" / "again").symlink_to(photos / "cat", target_is_directory=True)
    (photos / "dog" / "copy.png").symlink_to(photos / "dog" / "img0.png")  # a second name for one file
    classes, samples = scan_image_folder(photos)
    assert classes == plain[0] and samples == plain[1]  # each real image once, in the same order
    for name, target in (("everything", "/"), ("up", tmp_path)):
        (photos / name).symlink_to(target)
        with pytest.raises(DataError) as e:
            scan_image_folder(photos)
        assert str(photos / name) in str(e.value) and os.path.realpath(target) in str(e.value)  # the link, its target
        (photos / name).unlink()


# ---------------------------------------------------------------------------------------------- real data


def test_one_data_set_given_as_the_other_is_refused_by_content(tmp_path, monkeypatch):
    import hashlib

    from zoo.data import idx

    folder = make_idx_dataset(tmp_path / "MNIST" / "raw", n_train=40, n_test=20, gz=False)
    # Let these small files stand for Fashion-MNIST's official ones, as the real files do for the real hashes.
    digests = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}
    monkeypatch.setattr(idx, "OFFICIAL_SHA256", {digest: "fashion_mnist" for digest in digests.values()})
    with pytest.raises(DataError) as e:
        create_datasets("mnist", str(tmp_path))
    assert str(folder / "train-images-idx3-ubyte") in str(e.value) and "--dataset fashion_mnist" in e.value.hint
    train, _, _ = create_datasets("fashion_mnist", str(tmp_path / "MNIST"))  # what they are: accepted
    assert len(train) == 40


@pytest.mark.slow
@pytest.mark.realdata
@pytest.mark.parametrize(
    "name, other, folder", [("mnist", "fashion_mnist", "FashionMNIST"), ("fashion_mnist", "mnist", "MNIST")]
)
def test_the_real_files_of_one_data_set_are_not_taken_for_the_other(shared_data, name, other, folder):
    with pytest.raises(DataError) as e:
        create_datasets(name, str(shared_data / folder))
    assert str(shared_data / folder / "raw") in str(e.value) and f"--dataset {other}" in e.value.hint


@pytest.mark.slow
@pytest.mark.realdata
@pytest.mark.parametrize("name, folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_real_idx_files(shared_data, name, folder):
    train, val, info = create_datasets(name, str(shared_data))
    assert tuple(train.images.shape) == (60000, 1, 28, 28) and tuple(val.images.shape) == (10000, 1, 28, 28)
    assert info.root.endswith(f"{folder}/raw")
    # MNIST has 5923 zeros in train, 980 in test; Fashion-MNIST is exactly balanced.
    counts_train = torch.bincount(train.targets, minlength=10).tolist()
    counts_test = torch.bincount(val.targets, minlength=10).tolist()
    if name == "mnist":
        assert counts_train[0] == 5923 and counts_test[0] == 980
    else:
        assert counts_train == [6000] * 10 and counts_test == [1000] * 10
