"""The `precomputed` model: an embeddings file's vectors are the layer's features."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch

from redundancy.sources.datasets.embeddings import Columns, check_embeddings, content_hash
from redundancy.sources.datasets.rows import RowSplit
from redundancy.sources.encoders.base import FeatureSource

PRECOMPUTED_LAYER = "precomputed"


class Precomputed(FeatureSource):
    def __init__(self, path: Path, columns: Columns) -> None:
        header = check_embeddings(path, columns)  # cheap: shapes from the header, the width within the cap
        self.name = "precomputed"
        self.weights_source = "file"
        self.weights_identity = f"sha256:{content_hash(path)}"  # a file, or a pairs directory's tables
        self.layer = PRECOMPUTED_LAYER
        self.pooling = f"none (precomputed {header.format} vectors, width {header.d})"
        self.data_config = {"input_size": [header.d], "format": header.format}

    def batches(self, split: RowSplit, device: torch.device, batch_size: int) -> Iterator[torch.Tensor]:
        for start in range(0, len(split), batch_size):
            yield torch.from_numpy(split.items[start:start + batch_size]).to(device, non_blocking=True)
