"""Image folders under attack: links below a class folder, classes that skipping empties, NaN float TIFFs.

Each case trains with the real ``zoo train`` on real image files (PNG/JPEG from ``make_image_folder``, TIFFs
written with PIL) and real symlinks, and checks that zoo refuses the folder with one clear line before it
trains, or, where the user asked for it (``--skip-bad-images``), leaves the bad files out and says so.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from helpers import cli
from PIL import Image
from synth_data import make_image_folder

from zoo.errors import DataError


def _train(data: Path, out: Path, *extra: str) -> int:
    """``zoo train resnet20`` for one short epoch on the image folder ``data``."""
    return cli("train", "resnet20", "--dataset", f"imagefolder:{data}", "--recipe", "fast", "--epochs", "1",
               "--batch-size", "8", "--output", out, *extra)  # fmt: skip


def _error_line(err: str) -> str:
    """The last line of stderr, which must be zoo's one error line."""
    last = err.strip().splitlines()[-1]
    assert last.startswith("zoo train: error: "), err
    return last


@pytest.fixture(name="walks_stay_inside")
def walks_stay_inside_fixture(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Path]]:
    """``os.walk`` that fails at once when a walk started inside one of the listed folders reaches a folder
    outside them: on the code before the fix a link to ``/`` walked the whole disk, which this stops early."""
    roots: list[Path] = []
    real_walk = os.walk

    def walk(top, *args, **kwargs):
        inside = [os.path.realpath(r) for r in roots]
        watched = any(os.path.realpath(top).startswith(r + os.sep) for r in inside)
        for step in real_walk(top, *args, **kwargs):
            here = os.path.realpath(step[0])
            assert not watched or any(here == r or here.startswith(r + os.sep) for r in inside), (
                f"the walk of {top} reached {here}, outside the image folder"
            )
            yield step

    monkeypatch.setattr(os, "walk", walk)
    return roots


# ------------------------------------------------------------------------------- links below a class folder


@pytest.mark.parametrize(
    "where, target",
    [
        ("fish/up", "../.."),  # the work folder around the images
        ("cat/all", "/"),  # the whole disk
        ("cat/root", ".."),  # the image folder itself: every class's images under one
        ("dog/sub/deep", "../../../.."),  # deeper down a real sub-folder
    ],
)
def test_a_link_below_a_class_folder_to_the_image_folder_or_above_is_refused(
    tmp_path, capsys, walks_stay_inside, where, target
):
    photos = tmp_path / "work" / "photos"
    make_image_folder(photos, per_class=4, size=16)
    make_image_folder(tmp_path / "work" / "other", classes=("junk",), per_class=6, size=16)  # foreign images
    walks_stay_inside.append(photos)
    link = photos / where
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target)
    assert _train(photos, tmp_path / "out") == 2
    line = _error_line(capsys.readouterr().err)
    assert str(link) in line and str(photos / where.split("/")[0]) in line and os.path.realpath(link) in line


def test_links_below_a_class_folder_inside_or_beside_the_image_folder_are_followed(tmp_path):
    from zoo.data.folder import scan_image_folder

    photos = tmp_path / "photos"
    make_image_folder(photos, per_class=4, size=16)
    extra = make_image_folder(tmp_path / "more", classes=("cat",), per_class=2, size=16)
    (photos / "cat" / "more").symlink_to(tmp_path / "more" / "cat")  # beside the image folder: followed
    (photos / "cat" / "loop").symlink_to(photos / "cat")  # a loop: walked once
    classes, samples = scan_image_folder(photos)
    assert classes == ["cat", "dog", "fish"]
    cats = [p for p, label in samples if label == 0]
    assert len(cats) == 6 and {str(photos / "cat" / "more" / p.name) for p in extra} <= set(cats)
    # A link up the tree from inside the followed folder is the same attack one step removed.
    (tmp_path / "more" / "cat" / "up").symlink_to(tmp_path)
    with pytest.raises(DataError) as e:
        scan_image_folder(photos)
    assert str(photos / "cat" / "more" / "up") in str(e.value) and str(tmp_path) in str(e.value)


# ---------------------------------------------------------------------------- classes with no usable image


@pytest.mark.parametrize("size", [32, 80])  # the uint8 cache of resnet20's 32 px, and the streamed path
@pytest.mark.parametrize("skip", [True, False])
def test_a_class_whose_every_image_is_unreadable_is_refused_before_training(tmp_path, capsys, size, skip):
    photos = tmp_path / "photos"
    make_image_folder(photos, classes=("cat", "dog"), per_class=4, size=size)
    for p in (photos / "dog").iterdir():
        p.write_bytes(b"not an image at all")
    assert _train(photos, tmp_path / "out", *(["--skip-bad-images"] if skip else [])) == 2
    line = _error_line(capsys.readouterr().err)
    assert str(photos) in line and " dog " in line and "dog: 4 " in line  # the class and its 4 unreadable files
    assert str(photos / "dog" / "img0.png") in line
    assert not (tmp_path / "out" / "run.json").exists()


@pytest.mark.parametrize("tree", ["val", "test"])
def test_an_empty_or_unreadable_class_folder_of_an_evaluation_tree_is_refused(tmp_path, capsys, tree):
    ds = tmp_path / "ds"
    make_image_folder(ds / "train", classes=("cat", "dog"), per_class=4, size=16)
    make_image_folder(ds / tree, classes=("cat",), per_class=2, size=16)
    (ds / tree / "dog").mkdir()
    assert _train(ds, tmp_path / "out") == 2
    line = _error_line(capsys.readouterr().err)
    assert str(ds / tree) in line and " dog " in line
    # A dog folder whose only image is unreadable is as empty once --skip-bad-images leaves it out.
    (ds / tree / "dog" / "img0.png").write_bytes(b"\x89PNG\r\n\x1a\n cut short")
    assert _train(ds, tmp_path / "out", "--skip-bad-images") == 2
    line = _error_line(capsys.readouterr().err)
    assert str(ds / tree) in line and " dog " in line and str(ds / tree / "dog" / "img0.png") in line


# --------------------------------------------------------------------------------------- NaN float images


def _nan_tiff(path: Path) -> Path:
    Image.fromarray(np.full((80, 80), np.nan, dtype=np.float32), mode="F").save(path)
    assert Image.open(path).mode == "F"
    return path


def test_a_streamed_float_tiff_of_nan_pixels_is_a_bad_image_named_before_training(tmp_path, capsys):
    photos = tmp_path / "photos"
    make_image_folder(photos, classes=("cat", "dog"), per_class=4, size=80)  # > 64 px: streamed
    nan = _nan_tiff(photos / "dog" / "nan.tif")
    assert _train(photos, tmp_path / "out") == 2
    err = capsys.readouterr().err
    # Found by the check before training (the file and its reason), with the option that leaves it out.
    assert f"{nan}: DataError: 6400 " in err and "--skip-bad-images" in err  # the file, its 6400 NaN pixels
    assert not (tmp_path / "out" / "run.json").exists()
    # Asked to, zoo leaves it out, says so and records it, and trains on the rest.
    assert _train(photos, tmp_path / "out", "--skip-bad-images") == 0
    err = capsys.readouterr().err
    assert f"{nan}: DataError: 6400 " in err
    assert json.loads((tmp_path / "out" / "run.json").read_text())["data"]["skipped_images"] == [str(nan)]
