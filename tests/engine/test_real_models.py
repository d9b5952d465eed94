"""Real weights on real images: the bundled EfficientNet-Lite0 (ImageNet) and the CIFAR-10 subset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import skimage.data
import timm
import torch
from PIL import Image

from redundancy import AnalysisConfig, Runtime, analyze
from redundancy.pipeline import make_transform
from redundancy.sources.models import load_model


@pytest.mark.parametrize(
    ("photo", "expected"),
    [("chelsea", {281, 282, 285}), ("coffee", {967})],  # tabby, tiger cat, Egyptian cat; espresso
)
def test_bundled_weights_classify_real_photos(photo: str, expected: set[int]) -> None:
    loaded = load_model("tf_efficientnet_lite0", "bundled")
    transform, _ = make_transform(loaded, None)
    image = Image.fromarray(getattr(skimage.data, photo)())
    with torch.inference_mode():
        logits = loaded.module(transform(image).unsqueeze(0))[0]
    top = int(logits.argmax())
    label = timm.data.ImageNetInfo().index_to_description(top)
    assert top in expected, f"{photo} classified as {top} ({label})"
    assert loaded.weights_identity.startswith("bundled:sha256=")


def test_bundled_features_are_not_random() -> None:
    """The mapped weights differ from a fresh initialisation in every tensor that is learned."""
    bundled = load_model("tf_efficientnet_lite0", "bundled").module.state_dict()
    fresh = load_model("tf_efficientnet_lite0", "random").module.state_dict()
    learned = [k for k in fresh if k.endswith("weight")]
    assert all(not torch.equal(bundled[k], fresh[k]) for k in learned)


@pytest.mark.slow
def test_bundled_efficientnet_on_real_cifar10(shared_data: Path, tmp_path: Path) -> None:
    cfg = AnalysisConfig.model_validate(
        {
            "model": {"name": "tf_efficientnet_lite0", "weights": "bundled"},
            "dataset": {"spec": f"npz:{shared_data / 'cifar10.npz'}", "max_train": 600, "max_test": 300},
            "image_size": 96,
            "fractions": [0.005, 0.02, 0.1, 0.5, 1.0],
            "seeds": 3,
            "deltas": [0.05],
        }
    )
    report = analyze(cfg, Runtime(cache_dir=None, data_root=tmp_path))
    assert report.dataset.classes[:3] == ["airplane", "automobile", "bird"]
    assert report.full_accuracy > 0.5, "ImageNet features on CIFAR-10: far above chance (0.1)"
    acc = [s.accuracy_mean for s in report.summary]
    cka = [s.cka_mean for s in report.summary]
    assert acc[0] < acc[1] < acc[2] and acc[2] < acc[-1] + 0.02 and acc[0] < acc[-1] - 0.2
    assert all(np.diff(cka) > 0), f"CKA should rise with the fraction: {cka}"
    rec = report.recommendations[0]
    assert 0.0 < rec.fraction <= 1.0 and rec.fairness.gini_full >= 0.0
