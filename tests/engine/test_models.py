from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file

from redundancy.sources.models import FeatureExtractor, load_model


def test_safetensors_and_pth_checkpoints_load_exactly(tmp_path: Path) -> None:
    torch.manual_seed(3)
    src = timm.create_model("resnet18", num_classes=7)  # a fine-tuned head of another width
    state = {k: v.contiguous() for k, v in src.state_dict().items()}
    save_file(state, tmp_path / "ft.safetensors")
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "ft.pth")
    for name in ("ft.safetensors", "ft.pth"):
        loaded = load_model("resnet18", str(tmp_path / name))
        assert loaded.weights_source == "file" and loaded.weights_identity.startswith("file:sha256=")
        got = loaded.module.state_dict()
        assert all(torch.equal(got[k], state[k]) for k in state)
    a = load_model("resnet18", str(tmp_path / "ft.safetensors")).weights_identity
    assert a != load_model("resnet18", str(tmp_path / "ft.pth")).weights_identity


def test_transforms_come_from_timm_data_config() -> None:
    loaded = load_model("tf_efficientnet_lite0", "random")
    assert loaded.data_config["input_size"] == (3, 224, 224)
    assert loaded.data_config["mean"] == (0.5, 0.5, 0.5)


@pytest.mark.parametrize(
    ("model", "layer", "pooling", "width"),
    [
        ("resnet18", None, "forward_head(pre_logits=True)", 512),
        ("resnet18", "layer3", "global average pool over H, W", 256),
        ("vit_tiny_patch16_224", "blocks.5", "CLS token", 192),
    ],
)
def test_layers_and_their_pooling(model: str, layer: str | None, pooling: str, width: int) -> None:
    m = timm.create_model(model).eval()
    ex = FeatureExtractor(m, layer)
    with torch.inference_mode():
        out = ex(torch.randn(2, 3, 224, 224) if "vit" in model else torch.randn(2, 3, 64, 64))
    assert out.shape == (2, width) and ex.pooling == pooling
    assert ex.layer == (layer or "pre_logits")


def test_penultimate_is_what_feeds_the_classifier() -> None:
    m = timm.create_model("resnet18").eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        feats = FeatureExtractor(m)(x)
        assert torch.allclose(m.get_classifier()(feats), m(x), atol=1e-5)
