"""The batched device transform against timm's own per-image PIL transform (the slow, obvious path)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import timm
import torch

from redundancy.sources.datasets.base import ImageSplit, to_rgb_image
from redundancy.sources.datasets.batch_transform import BatchTransform


def _timm_transform(size: int, crop_pct: float = 0.875, interpolation: str = "bicubic",
                    mean: tuple[float, ...] = (0.485, 0.456, 0.406), std: tuple[float, ...] = (0.229, 0.224, 0.225)):
    return timm.data.create_transform(input_size=(3, size, size), interpolation=interpolation, mean=mean, std=std,
                                      crop_pct=crop_pct, crop_mode="center", is_training=False)


def _compare(images: np.ndarray, transform: object) -> np.ndarray:
    batched = BatchTransform.from_timm(transform)
    assert batched is not None
    want = torch.stack([transform(to_rgb_image(a)) for a in images])
    got = batched(torch.from_numpy(images))
    assert got.shape == want.shape and got.dtype == torch.float32
    std = torch.tensor(batched.std).view(1, 3, 1, 1)
    return ((got - want).abs() * std * 255).numpy()  # differences in grey levels


@pytest.mark.parametrize(
    ("shape", "size", "interpolation"),
    [
        ((6, 32, 32, 3), 224, "bicubic"),  # CIFAR-like upscaling, the common case
        ((4, 8, 8), 64, "bicubic"),  # grey (digits): replicated to RGB
        ((3, 40, 24, 4), 32, "bicubic"),  # RGBA, portrait, non-integer ratios
        ((3, 30, 70, 1), 48, "bicubic"),  # grey with a channel axis, landscape
        ((2, 64, 64, 3), 32, "bicubic"),  # downscaling (antialiased)
    ],
)
def test_batched_transform_equals_pil_path(shape: tuple[int, ...], size: int, interpolation: str) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, shape, dtype=np.uint8)
    diff = _compare(images, _timm_transform(size, interpolation=interpolation))
    assert diff.max() <= 1.0 + 1e-3  # at most one grey level (Pillow's fixed-point rounding)
    assert (diff > 0.5).mean() < 0.03  # on a few pixels (uniform noise is the worst case)


def test_batched_transform_on_real_cifar(shared_data: Path) -> None:
    x = np.load(shared_data / "cifar10.npz")["x_test"][:8]
    diff = _compare(x, _timm_transform(224, crop_pct=0.875, mean=(0.5,) * 3, std=(0.5,) * 3))
    assert diff.max() <= 1.0 + 1e-3 and (diff > 0.5).mean() < 1e-3


def test_crop_larger_than_image_pads_like_torchvision() -> None:
    from torchvision import transforms as T

    tf = T.Compose([T.CenterCrop(12), T.ToTensor(), T.Normalize((0.5,) * 3, (0.5,) * 3)])
    images = np.random.default_rng(1).integers(0, 256, (2, 7, 10, 3), dtype=np.uint8)
    assert _compare(images, tf).max() < 1e-3


def test_unsupported_transforms_fall_back() -> None:
    from torchvision import transforms as T

    assert BatchTransform.from_timm(T.Compose([T.Resize(32, interpolation=T.InterpolationMode.NEAREST),
                                               T.ToTensor(), T.Normalize((0.5,) * 3, (0.5,) * 3)])) is None
    assert BatchTransform.from_timm(_timm_transform(32, interpolation="bilinear")) is None  # differs from Pillow
    assert BatchTransform.from_timm(T.Compose([T.ToTensor()])) is None
    assert BatchTransform.from_timm(lambda im: im) is None


def test_pixel_source_follows_subsets() -> None:
    images = np.arange(10 * 2 * 2, dtype=np.uint8).reshape(10, 2, 2)
    split = ImageSplit.from_arrays(images, np.arange(10) % 2, "t")
    sub = split.subset(np.array([7, 3, 9])).subset(np.array([2, 0]))
    assert sub.pixels is not None
    np.testing.assert_array_equal(sub.pixels.take(np.arange(2)), images[[9, 7]])
    assert ImageSplit.from_arrays([images[0], images[1]], np.array([0, 1]), "list").pixels is None
    assert ImageSplit.from_arrays(images.astype(np.float32), np.arange(10) % 2, "f").pixels is None


# ---- image files: the PIL half per image, ToTensor → Normalize once per batch ---------------------

@pytest.mark.parametrize("interpolation", ["bicubic", "bilinear"])  # bilinear too: the resize stays PIL
def test_split_at_tensor_gives_the_whole_transforms_numbers(interpolation):
    from PIL import Image

    from redundancy.sources.datasets.batch_transform import split_at_tensor

    transform = _timm_transform(48, interpolation=interpolation)
    rng = np.random.default_rng(3)
    images = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in ((32, 32), (50, 20))]
    halves = split_at_tensor(transform)
    assert halves is not None
    pixels, normalise = halves
    want = torch.stack([transform(im) for im in images])
    got = normalise(torch.stack([torch.from_numpy(pixels(im)) for im in images]))
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)  # the same arithmetic, not an approximation


def test_split_at_tensor_refuses_what_it_cannot_cut():
    from torchvision import transforms as T

    from redundancy.sources.datasets.batch_transform import split_at_tensor

    norm = T.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert split_at_tensor(T.Compose([T.Resize(32), T.ToTensor(), norm])) is None, "sizes would differ"
    assert split_at_tensor(T.Compose([T.CenterCrop(8), T.ToTensor()])) is None, "no Normalize last"
    assert split_at_tensor(T.Compose([T.ToTensor(), norm])) is None, "no fixed size before ToTensor"
    assert split_at_tensor(T.Compose([T.Resize((8, 8)), T.ToTensor(), norm])) is not None
    assert split_at_tensor(lambda im: im) is None
