"""Extraction: the batched array path against the per-image PIL path, the store it writes, progress."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import timm
import torch

from redundancy import AnalysisConfig, ProgressEvent, Runtime, analyze
from redundancy.sources.datasets import load_dataset
from redundancy.sources.extraction import extract
from redundancy.sources.models.layers import FeatureExtractor
from redundancy.sources.stats import GramStats


@pytest.fixture(scope="module")
def model() -> tuple[FeatureExtractor, object]:
    torch.manual_seed(0)
    m = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
    cfg = dict(timm.data.resolve_data_config({}, model=m), input_size=(3, 48, 48))
    return FeatureExtractor(m), timm.data.create_transform(**cfg, is_training=False)


def _splits(n: int = 40):
    ds = load_dataset("digits")
    train = ds.train.subset(np.arange(n))
    return train, ds.train.subset(np.arange(n, n + 10)), ds.test.subset(np.arange(12))


def test_array_path_equals_pil_path_and_statistics_equal_stored_features(model, tmp_path: Path) -> None:
    extractor, transform = model
    train, val, test = _splits()
    assert train.pixels is not None
    kw = {"device": "cpu", "batch_size": 16, "keep_train": True, "feature_dtype": "float32"}
    fast = extract(extractor, transform, train, val, test, 10, tmp_path / "a", **kw)
    no_pixels = [dataclasses.replace(s, pixels=None) for s in (train, val, test)]
    slow = extract(extractor, transform, *no_pixels, 10, tmp_path / "b", **kw)
    for name in ("x_train", "x_val", "x_test"):
        a, b = getattr(fast, name), getattr(slow, name)
        assert isinstance(a, np.memmap) and a.dtype == np.float32
        scale = np.abs(b).max()
        assert np.abs(a - b).max() <= 0.02 * scale, name  # a grey level on a few pixels, through 40 layers
    np.testing.assert_array_equal(fast.y_val, val.labels)
    # The float64 statistics are exactly those of the stored (float32) train features.
    want = GramStats.from_features(np.asarray(fast.x_train, np.float64), fast.y_train, 10)
    np.testing.assert_allclose(fast.stats.gram, want.gram, rtol=1e-6)
    np.testing.assert_array_equal(fast.stats.class_counts, want.class_counts)


def test_file_path_equals_the_whole_transform_and_a_plain_forward(model, tmp_path: Path) -> None:
    """Image files (no pixel array): PIL half per image, normalised per batch, channels-last model;
    against the obvious computation: timm's whole transform per image, one stacked fp32 forward."""
    extractor, transform = model
    _, _, test = _splits()
    files = dataclasses.replace(test, pixels=None)
    got = extract(extractor, transform, files.subset(np.arange(2)), files.subset(np.arange(2)), files, 10,
                  tmp_path / "f", device="cpu", batch_size=5, feature_dtype="float32")
    extractor.model.to(memory_format=torch.contiguous_format)
    with torch.inference_mode():
        want = extractor(torch.stack([transform(files.load(i)) for i in range(len(files))])).numpy()
    np.testing.assert_allclose(np.asarray(got.x_test), want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_default_store_is_float16_without_train_samples(model, tmp_path: Path) -> None:
    extractor, transform = model
    train, val, test = _splits(20)
    seen: list[tuple[int, int]] = []
    f = extract(extractor, transform, train, val, test, 10, tmp_path / "s", batch_size=8,
                progress=lambda done, total: seen.append((done, total)))
    assert f.x_train is None and f.x_val.dtype == np.float16 and f.x_test.shape == (12, 1280)
    assert f.stats.n == 20
    assert seen[-1] == (42, 42) and all(t == 42 for _, t in seen)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_progress_events_carry_images_done_and_total(tmp_path: Path) -> None:
    cfg = AnalysisConfig.model_validate({
        "model": {"name": "tf_efficientnet_lite0", "weights": "random"},
        "dataset": {"spec": "digits", "max_train": 60, "max_test": 30},
        "image_size": 32, "fractions": [0.5, 1.0], "seeds": 1, "baselines": [], "bootstrap": 0,
    })
    events: list[ProgressEvent] = []
    analyze(cfg, Runtime(cache_dir=None, data_root=tmp_path, work_dir=tmp_path / "w"), progress=events.append)
    images = [(e.images_done, e.images_total) for e in events if e.images_done is not None]
    assert images and images[-1] == (90, 90)  # 54 fit + 6 val + 30 test
    assert all(e.stage == "extract" for e in events if e.images_done is not None)
    assert all(e.images_done is None for e in events if e.stage != "extract")
    assert list((tmp_path / "w").iterdir()) == []  # the scratch store is gone
