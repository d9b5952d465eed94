"""Each bad input raises a specific exception whose message names the problem."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from pydantic import ValidationError

from redundancy import AnalysisConfig, Runtime, analyze
from redundancy.errors import (
    CheckpointMismatchError,
    DatasetFormatError,
    DatasetNotFoundError,
    InvalidConfigError,
    UnknownDatasetError,
    UnknownLayerError,
    UnknownModelError,
    WeightsNotFoundError,
)
from redundancy.sources.datasets import load_dataset
from redundancy.sources.models import FeatureExtractor, load_model

BASE = {
    "model": {"name": "resnet18", "weights": "random"},
    "dataset": {"spec": "digits", "max_train": 100, "max_test": 50},
    "image_size": 32,
    "fractions": [0.5],
    "seeds": 1,
}


def _run(tmp_path: Path, **changes: object) -> None:
    analyze(AnalysisConfig.model_validate({**BASE, **changes}), Runtime(cache_dir=None, data_root=tmp_path))


def test_unknown_model_names_it_and_suggests(tmp_path: Path) -> None:
    with pytest.raises(UnknownModelError, match=r"unknown timm model 'resnet181'.*resnet18"):
        _run(tmp_path, model={"name": "resnet181", "weights": "random"})


def test_unknown_dataset(tmp_path: Path) -> None:
    with pytest.raises(UnknownDatasetError, match="unknown dataset 'mnist'"):
        _run(tmp_path, dataset={"spec": "mnist"})
    with pytest.raises(UnknownDatasetError, match="needs a path"):
        load_dataset("npz:")


def test_missing_files(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match="npz file not found"):
        load_dataset(f"npz:{tmp_path / 'nope.npz'}")
    with pytest.raises(DatasetNotFoundError, match="image folder not found"):
        load_dataset(f"imagefolder:{tmp_path / 'nope'}")
    with pytest.raises(WeightsNotFoundError, match="checkpoint file not found"):
        load_model("resnet18", str(tmp_path / "missing.safetensors"))
    with pytest.raises(DatasetNotFoundError, match="allow downloads"):
        load_dataset("cifar10", Runtime(data_root=tmp_path))


@pytest.mark.parametrize("fractions", [[0.0], [1.5], [-0.1]])
def test_fraction_outside_unit_interval(fractions: list[float]) -> None:
    with pytest.raises(ValidationError, match=r"fractions\n.*outside \(0, 1\]"):
        AnalysisConfig.model_validate({**BASE, "fractions": fractions})


@pytest.mark.parametrize("delta", [1.0, -0.01, 2.0])
def test_delta_outside_range(delta: float) -> None:
    with pytest.raises(ValidationError, match=r"deltas\n.*outside \[0, 1\)"):
        AnalysisConfig.model_validate({**BASE, "deltas": [delta]})


def test_labels_and_images_of_different_lengths(tmp_path: Path) -> None:
    path = tmp_path / "bad.npz"
    x = np.zeros((10, 8, 8, 3), np.uint8)
    np.savez(path, x_train=x, y_train=np.arange(9) % 2, x_test=x, y_test=np.arange(10) % 2)
    with pytest.raises(DatasetFormatError, match="10 images but 9 labels"):
        load_dataset(f"npz:{path}")


def test_labels_outside_the_class_list(tmp_path: Path) -> None:
    path = tmp_path / "bad.npz"
    x = np.zeros((4, 8, 8), np.uint8)
    np.savez(path, x_train=x, y_train=np.array([0, 1, 2, 5]), x_test=x, y_test=np.array([0, 1, 1, 0]),
             classes=np.array(["a", "b", "c"]))
    with pytest.raises(DatasetFormatError, match=r"labels span 0\.\.5 but there are 3 classes"):
        load_dataset(f"npz:{path}")


def test_npz_missing_arrays(tmp_path: Path) -> None:
    path = tmp_path / "bad.npz"
    np.savez(path, x_train=np.zeros((2, 4, 4), np.uint8))
    with pytest.raises(DatasetFormatError, match="lacks array.*y_train"):
        load_dataset(f"npz:{path}")


def test_checkpoint_that_does_not_fit_the_architecture(tmp_path: Path) -> None:
    path = tmp_path / "resnet18.pth"
    torch.save(timm.create_model("resnet18").state_dict(), path)
    with pytest.raises(CheckpointMismatchError, match="does not fit EfficientNet.*missing.*unexpected"):
        load_model("tf_efficientnet_lite0", str(path))


def test_pickled_object_is_refused_by_weights_only(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": object()}, path)
    with pytest.raises(CheckpointMismatchError, match="cannot read checkpoint"):
        load_model("resnet18", str(path))


def test_bundled_weights_only_for_their_model() -> None:
    with pytest.raises(InvalidConfigError, match="bundled weights exist only for tf_efficientnet_lite0"):
        load_model("resnet18", "bundled")


def test_unknown_layer_suggests() -> None:
    m = timm.create_model("resnet18")
    with pytest.raises(UnknownLayerError, match=r"no module named 'layer5'.*layer"):
        FeatureExtractor(m, "layer5")


def test_too_few_test_images_for_the_classes(tmp_path: Path) -> None:
    with pytest.raises(DatasetFormatError, match="have no test images.*raise max_test") as info:
        _run(tmp_path, dataset={"spec": f"npz:{_three_class_npz(tmp_path)}", "max_test": 10})
    assert info.value.field == "dataset.max_test"


def _three_class_npz(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    path = tmp_path / "three.npz"
    np.savez(path, x_train=rng.integers(0, 255, (60, 8, 8), dtype=np.uint8), y_train=np.arange(60) % 3,
             x_test=rng.integers(0, 255, (30, 8, 8), dtype=np.uint8), y_test=np.r_[np.zeros(20, int), np.ones(10, int)])
    return path


def test_unknown_config_field_is_refused() -> None:
    with pytest.raises(ValidationError, match="extra"):
        AnalysisConfig.model_validate({**BASE, "fractons": [0.5]})
