from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from redundancy.sources.datasets import balanced_subset, load_dataset
from redundancy.sources.datasets.base import validation_split


def test_digits_ships_offline_with_class_names_and_grey_becomes_rgb() -> None:
    ds = load_dataset("digits")
    assert ds.classes == [str(i) for i in range(10)]
    assert len(ds.train) + len(ds.test) == 1797
    im = ds.train.load(0)
    assert im.mode == "RGB" and im.size == (8, 8)
    a = np.asarray(im)
    assert np.array_equal(a[..., 0], a[..., 2]) and a.max() > 200  # grey replicated, 0..16 scaled to 0..255


def test_npz_keeps_class_names_and_handles_grey_arrays(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    path = tmp_path / "d.npz"
    np.savez(path, x_train=rng.integers(0, 255, (20, 6, 5), dtype=np.uint8), y_train=np.arange(20) % 2,
             x_test=rng.integers(0, 255, (4, 6, 5, 1), dtype=np.uint8), y_test=np.array([0, 1, 0, 1]),
             classes=np.array(["cat", "dog"]))
    ds = load_dataset(f"npz:{path}")
    assert ds.classes == ["cat", "dog"]
    assert ds.train.load(3).size == (5, 6) and ds.test.load(0).mode == "RGB"
    assert ds.train.identity != load_dataset(f"npz:{path}").test.identity


def test_imagefolder(tmp_path: Path) -> None:
    for split, n in (("train", 3), ("test", 2)):
        for cls in ("ants", "bees"):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(n):
                Image.new("L", (10, 12), color=i * 40).save(tmp_path / split / cls / f"{i}.png")
    ds = load_dataset(f"imagefolder:{tmp_path}")
    assert ds.classes == ["ants", "bees"]
    assert ds.train.labels.tolist() == [0, 0, 0, 1, 1, 1] and len(ds.test) == 4
    assert ds.test.load(3).mode == "RGB"


def test_balanced_seeded_caps() -> None:
    labels = np.r_[np.zeros(100, int), np.ones(100, int), np.full(5, 2)]
    idx = balanced_subset(labels, 60, seed=1)
    counts = np.bincount(labels[idx], minlength=3)
    assert counts.tolist() == [28, 27, 5] or counts.tolist() == [27, 28, 5]  # the small class gives its share
    assert np.array_equal(idx, balanced_subset(labels, 60, seed=1))
    assert not np.array_equal(idx, balanced_subset(labels, 60, seed=2))
    assert np.array_equal(balanced_subset(labels, 500, seed=0), np.arange(205))


def test_validation_split_is_stratified_disjoint_and_seeded() -> None:
    labels = np.repeat(np.arange(4), 50)
    fit, val = validation_split(labels, 0.1, seed=0)
    assert len(np.intersect1d(fit, val)) == 0 and len(fit) + len(val) == 200
    assert np.bincount(labels[val]).tolist() == [5, 5, 5, 5]
    assert not np.array_equal(val, validation_split(labels, 0.1, seed=1)[1])


@pytest.mark.parametrize("shape", [(8, 8, 2), (2, 8, 8, 3)])
def test_bad_image_shapes(shape: tuple[int, ...], tmp_path: Path) -> None:
    from redundancy.errors import DatasetFormatError
    from redundancy.sources.datasets.base import to_rgb_image

    with pytest.raises(DatasetFormatError, match="shape"):
        to_rgb_image(np.zeros(shape, np.uint8))
