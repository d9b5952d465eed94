"""`DeviceForward` pads a short batch to one shape (`pad_to`, set on CUDA so that cuDNN builds its plans once)
and drops the padding's rows: the real rows' features are those of the batch unpadded."""

from __future__ import annotations

import pytest
import timm
import torch

from redundancy.sources.extraction import DeviceForward
from redundancy.sources.models.layers import FeatureExtractor, default_sweep


@pytest.mark.parametrize("name", ["test_efficientnet", "test_vit"])
def test_a_padded_batch_gives_the_features_of_the_batch_alone(name: str) -> None:
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False)
    size = model.pretrained_cfg.get("input_size", (3, 32, 32))[-1]
    images = torch.randn(3, 3, size, size)
    plain = DeviceForward(FeatureExtractor(model), "cpu")(images)
    padded_forward = DeviceForward(FeatureExtractor(model), "cpu", pad_to=8)
    padded = padded_forward(images)
    assert padded.shape == plain.shape == (3, plain.shape[1])
    torch.testing.assert_close(padded, plain, rtol=1e-4, atol=1e-5)
    full = torch.randn(8, 3, size, size)
    assert padded_forward(full).shape[0] == 8  # a full batch is left as it is
    sweep = DeviceForward(FeatureExtractor(model, layers=default_sweep(model)), "cpu", pad_to=8)(images)
    assert sweep.shape[0] == 3  # every layer's columns, the padding's rows dropped
