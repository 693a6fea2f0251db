"""The small-image folder cache: decoded once, memory-mapped, keyed by files, sizes and mtimes, written atomically."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from synth_data import make_image_folder

from zoo.data import ImageFolderDataset, TensorImageDataset, create_datasets
from zoo.data.folder import cached_images, scan_image_folder
from zoo.errors import DataError
from zoo.utils.checks import Invalid

CFG32 = {"input_size": (3, 32, 32), "mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25), "crop_pct": 1.0}


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    folder = tmp_path / "zoo-data"
    monkeypatch.setenv("ZOO_DATA_DIR", str(folder))
    return folder / "image-cache"


def _decode_counter(monkeypatch):
    """Count PIL decodes (Image.open calls) from here on."""
    from PIL import Image

    calls = {"n": 0}
    real_open = Image.open

    def counting_open(*args, **kwargs):
        calls["n"] += 1
        return real_open(*args, **kwargs)

    monkeypatch.setattr(Image, "open", counting_open)
    return calls


def test_pixels_are_what_torchvision_imagefolder_reads(tmp_path, cache_dir):
    from torchvision.datasets import ImageFolder

    make_image_folder(tmp_path / "photos", per_class=4, size=32)
    classes, samples = scan_image_folder(tmp_path / "photos")
    cached = cached_images(samples, (32, 32))
    reference = ImageFolder(str(tmp_path / "photos"))
    assert cached.samples == reference.samples and cached.images.shape == (12, 3, 32, 32)
    for i, (img, _) in enumerate(reference):
        assert torch.equal(cached.images[i], torch.from_numpy(np.array(img.convert("RGB"))).permute(2, 0, 1))
    assert cached.path.parent == cache_dir and cached.path.is_file()


def test_second_open_maps_the_file_without_decoding(tmp_path, cache_dir, monkeypatch):
    make_image_folder(tmp_path / "photos", per_class=3, size=32)
    _, samples = scan_image_folder(tmp_path / "photos")
    first = cached_images(samples, (32, 32))
    calls = _decode_counter(monkeypatch)
    again = cached_images(samples, (32, 32))
    assert calls["n"] == 0
    assert again.path == first.path and torch.equal(again.images, first.images)
    # Memory-mapped copy-on-write: a change to the tensor never reaches the file.
    again.images[0].zero_()
    assert torch.equal(cached_images(samples, (32, 32)).images[0], first.images[0])
    assert first.images[0].any()


@pytest.mark.parametrize("change", ["touch", "rewrite", "same-size", "add", "remove"])
def test_any_change_to_the_files_rebuilds_the_cache(tmp_path, cache_dir, monkeypatch, change):
    paths = make_image_folder(tmp_path / "photos", per_class=3, size=32)
    _, samples = scan_image_folder(tmp_path / "photos")
    old = cached_images(samples, (32, 32))
    target = paths[0]  # cat/img0.png
    if change == "touch":  # same bytes, another modification time
        st = os.stat(target)
        os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    elif change == "rewrite":  # other pixels, the same modification time
        from PIL import Image

        st = os.stat(target)
        Image.fromarray(np.full((32, 32, 3), 7, dtype=np.uint8)).save(target)
        os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    elif change == "same-size":  # other pixels, the same file size and modification time: only ctime tells
        from PIL import Image

        target = tmp_path / "photos" / "cat" / "img9.bmp"  # uncompressed: every 32x32 picture has one size
        Image.fromarray(np.full((32, 32, 3), 200, dtype=np.uint8)).save(target)
        _, samples = scan_image_folder(tmp_path / "photos")
        old = cached_images(samples, (32, 32))
        st = os.stat(target)
        Image.fromarray(np.full((32, 32, 3), 7, dtype=np.uint8)).save(target)
        os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
        assert os.stat(target).st_size == st.st_size
    elif change == "add":
        make_image_folder(tmp_path / "photos", classes=("cat",), per_class=5, size=32)  # two more cats
    else:
        target.unlink()
    _, samples = scan_image_folder(tmp_path / "photos")
    calls = _decode_counter(monkeypatch)
    new = cached_images(samples, (32, 32))
    assert calls["n"] == len(samples)  # every image decoded again
    assert new.path != old.path and not old.path.exists()  # the stale cache is gone
    assert len(new.images) == len(samples)
    if change in ("rewrite", "same-size"):
        row = [p for p, _ in new.samples].index(str(target))
        assert (new.images[row] == 7).all()


def test_an_interrupted_write_leaves_no_cache(tmp_path, cache_dir, monkeypatch):
    make_image_folder(tmp_path / "photos", per_class=3, size=32)
    _, samples = scan_image_folder(tmp_path / "photos")

    real_save, dying = np.save, [True]

    def dies_half_way(f, arr, *args, **kwargs):
        if not dying:
            return real_save(f, arr, *args, **kwargs)
        f.write(b"\x93NUMPY half a header")
        raise KeyboardInterrupt  # Ctrl-C in the middle of writing

    monkeypatch.setattr(np, "save", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        cached_images(samples, (32, 32))
    assert list(cache_dir.iterdir()) == []  # neither the .npy nor its temporary file
    dying.clear()
    assert cached_images(samples, (32, 32)).images.shape == (9, 3, 32, 32)


def test_unreadable_images_are_reported_each_time_and_strict_fails(tmp_path, cache_dir, capsys):
    make_image_folder(tmp_path / "photos", per_class=3, size=32)
    bad = tmp_path / "photos" / "dog" / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    _, samples = scan_image_folder(tmp_path / "photos")
    for _ in range(2):  # building the cache, then reading it
        cached = cached_images(samples, (32, 32))
        assert str(bad) in capsys.readouterr().err
        assert len(cached.images) == 9 and str(bad) not in {p for p, _ in cached.samples}
    with pytest.raises(DataError) as e:
        cached_images(samples, (32, 32), strict=True)
    assert str(bad) in str(e.value)


def test_small_folders_become_tensor_sets_and_others_stream(tmp_path, cache_dir, monkeypatch, capsys):
    make_image_folder(tmp_path / "small", per_class=6, size=32)
    train, val, info = create_datasets("imagefolder:" + str(tmp_path / "small"), model_cfg=CFG32, val_split=0.34)
    assert isinstance(train, TensorImageDataset) and isinstance(val, TensorImageDataset)
    assert (len(train), len(val)) == (12, 6) and info.extra["image_cache"]
    # The split is the same seeded split of the same files as the streamed path's.
    monkeypatch.setenv("ZOO_IMAGE_CACHE_MB", "0")  # the cache turned off
    s_train, s_val, _ = create_datasets("imagefolder:" + str(tmp_path / "small"), model_cfg=CFG32, val_split=0.34)
    assert isinstance(s_train, ImageFolderDataset) and isinstance(s_val, ImageFolderDataset)
    assert sorted(val.targets.tolist()) == sorted(t for _, t in s_val.samples)
    for i in range(len(val)):
        assert torch.allclose(val[i][0], s_val[i][0], atol=1e-6)
    monkeypatch.delenv("ZOO_IMAGE_CACHE_MB")
    # Images that are not the model's input size, or larger than 64 px, stream through per-sample transforms.
    make_image_folder(tmp_path / "other", per_class=2, size=20)
    assert isinstance(create_datasets("imagefolder:" + str(tmp_path / "other"), model_cfg=CFG32)[0], ImageFolderDataset)
    make_image_folder(tmp_path / "big", per_class=2, size=96)
    cfg96 = {**CFG32, "input_size": (3, 96, 96)}
    assert isinstance(create_datasets("imagefolder:" + str(tmp_path / "big"), model_cfg=cfg96)[0], ImageFolderDataset)
    # One image of another size among small ones: not cached, said so, and still every image is used.
    make_image_folder(tmp_path / "mixed", per_class=3, size=32)
    from PIL import Image

    Image.fromarray(np.zeros((20, 24, 3), dtype=np.uint8)).save(tmp_path / "mixed" / "fish" / "odd.png")
    capsys.readouterr()
    train, val, _ = create_datasets("imagefolder:" + str(tmp_path / "mixed"), model_cfg=CFG32, val_split=0.34)
    assert isinstance(train, ImageFolderDataset) and len(train) + len(val) == 10
    assert str(tmp_path / "mixed" / "fish" / "odd.png") in capsys.readouterr().err  # the image that is not cached


def test_cache_budget_and_unwritable_cache_folder(tmp_path, cache_dir, monkeypatch, capsys):
    make_image_folder(tmp_path / "photos", per_class=3, size=32)
    monkeypatch.setenv("ZOO_IMAGE_CACHE_MB", str(8 * 3 * 32 * 32 / 2**20))  # 8 images' worth: 9 do not fit
    assert isinstance(
        create_datasets("imagefolder:" + str(tmp_path / "photos"), model_cfg=CFG32)[0], ImageFolderDataset
    )
    for budget, value in (("lots", "lots"), ("-1", -1.0), ("inf", float("inf"))):
        monkeypatch.setenv("ZOO_IMAGE_CACHE_MB", budget)
        with pytest.raises(Invalid) as e:
            create_datasets("imagefolder:" + str(tmp_path / "photos"), model_cfg=CFG32)
        assert (e.value.name, e.value.value) == ("ZOO_IMAGE_CACHE_MB", value)
    monkeypatch.delenv("ZOO_IMAGE_CACHE_MB")
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder would be")
    _, samples = scan_image_folder(tmp_path / "photos")
    cached = cached_images(samples, (32, 32), cache_dir=blocker / "image-cache")
    assert cached.path is None and cached.images.shape == (9, 3, 32, 32)
    assert str(blocker / "image-cache") in capsys.readouterr().err  # the folder it could not write


@pytest.mark.parametrize("cached", [True, False])
def test_16_bit_images_train_as_what_they_show_not_white(tmp_path, cache_dir, cached):
    """A folder of 16-bit PNGs (scanners, microscopes) reads as the same pictures at 8 bits, in both readers."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for folder, to_file in (("deep", lambda a: Image.fromarray(a.astype(np.uint16) * 257)),  # mode I;16
                            ("plain", lambda a: Image.fromarray(a.astype(np.uint8)))):  # fmt: skip
        for k, name in enumerate(("dark", "light")):
            (tmp_path / folder / name).mkdir(parents=True)
            for i in range(3):
                to_file(rng.integers(40 * k, 40 * k + 180, (32, 32))).save(tmp_path / folder / name / f"{i}.png")
        rng = np.random.default_rng(0)  # the same pixels in both folders
    cfg = CFG32 if cached else {**CFG32, "input_size": (3, 24, 24)}  # the cache takes only images of its size
    # The held-out images: read without augmentation, whichever reader.
    sets = [create_datasets(f"imagefolder:{tmp_path / f}", model_cfg=cfg, val_split=0.34)[1] for f in ("deep", "plain")]
    assert isinstance(sets[0], TensorImageDataset) == cached
    deep, plain = (torch.stack([s[i][0] for i in range(len(s))]) for s in sets)
    torch.testing.assert_close(deep, plain)  # not white: Pillow's own conversion clips 16-bit values at 255
