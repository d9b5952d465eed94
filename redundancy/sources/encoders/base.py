"""What `extract_rows` asks of a feature source that is not a timm model."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any

import torch

from redundancy.sources.datasets.rows import RowSplit


class FeatureSource(ABC):
    """Float32 feature batches for a split, in the split's order, on a device.

    It also stands where the pipeline keeps a timm model's facts (`LoadedModel`: `name`,
    `weights_source`, `weights_identity`, `weights_random`, `data_config`) and a layer's
    (`FeatureExtractor`: `layer`, `pooling`), so the report and the feature cache key read the same
    attributes for every kind of model."""

    name: str
    weights_source: str  # precomputed: "file"; hf: "hf"
    weights_identity: str  # the content hash that keys the feature cache
    layer: str
    pooling: str
    data_config: dict[str, Any]  # `input_size` for the report; everything else that changes features
    weights_random = False

    @abstractmethod
    def batches(self, split: RowSplit, device: torch.device, batch_size: int) -> Iterator[torch.Tensor]:
        """(B, d) float32 features of consecutive rows of `split`, covering it in order."""
