"""When hub weights cannot be fetched, the hint names only weights that exist for that model."""

from __future__ import annotations

import pytest
import timm

from redundancy.errors import InvalidConfigError, WeightsUnavailableError
from redundancy.sources.models.loading import load_model


@pytest.fixture
def offline_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    """The hub unreachable and its cache empty, whatever this machine has cached."""
    create = timm.create_model

    def create_model(name: str, pretrained: bool = False, **kwargs):
        if pretrained:
            raise OSError("We couldn't connect to 'https://huggingface.co'")
        return create(name, pretrained=False, **kwargs)

    monkeypatch.setattr(timm, "create_model", create_model)


def test_hub_failure_for_a_model_without_bundled_weights_does_not_suggest_them(offline_hub: None) -> None:
    with pytest.raises(WeightsUnavailableError) as info:
        load_model("resnet18", "hub")
    msg = info.value.message
    assert "could not fetch pretrained weights for 'resnet18'" in msg
    assert "bundled" not in msg and "local checkpoint of resnet18" in msg


def test_hub_failure_for_the_bundled_model_suggests_them(offline_hub: None) -> None:
    with pytest.raises(WeightsUnavailableError, match="use weights 'bundled'"):
        load_model("tf_efficientnet_lite0", "hub")


def test_asking_for_bundled_weights_of_another_model_suggests_what_exists() -> None:
    with pytest.raises(InvalidConfigError) as info:
        load_model("resnet18", "bundled")
    msg = info.value.message
    assert msg.startswith("bundled weights exist only for tf_efficientnet_lite0, not 'resnet18'")
    assert "local checkpoint of resnet18" in msg and "use weights 'bundled'" not in msg
