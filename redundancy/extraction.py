"""One streaming pass over the images: float64 sufficient statistics for train, features for val/test.

Batched, no autograd, CUDA with autocast when present. The train split feeds `GramStats`
(`n`, `Σx`, `XᵀX`, per-class sums) and also keeps its float32 features for probes that need
samples (logistic, baselines); validation (held out from train) and test features are kept.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from redundancy.datasets.base import ImageSplit
from redundancy.errors import Cancelled
from redundancy.models.layers import FeatureExtractor
from redundancy.stats import GramAccumulator, GramStats

# Bump when anything that changes extracted features changes in this code.
FEATURES_VERSION = "1"


@dataclass
class Features:
    stats: GramStats  # the train (fit) split
    x_train: np.ndarray  # (n, d) float32, same rows as `stats`
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    pooling: str

    @property
    def d(self) -> int:
        return self.stats.d

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
        np.savez(
            tmp,
            **{f"stats_{k}": v for k, v in self.stats.to_arrays().items()},
            x_train=self.x_train, y_train=self.y_train, x_val=self.x_val, y_val=self.y_val,
            x_test=self.x_test, y_test=self.y_test, pooling=np.asarray(self.pooling),
        )
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> Features:
        with np.load(path, allow_pickle=False) as a:
            stats = GramStats.from_arrays({k[6:]: a[k] for k in a.files if k.startswith("stats_")})
            return cls(
                stats=stats, x_train=a["x_train"], y_train=a["y_train"], x_val=a["x_val"], y_val=a["y_val"],
                x_test=a["x_test"], y_test=a["y_test"], pooling=str(a["pooling"]),
            )


class _TransformedSplit(torch.utils.data.Dataset):
    def __init__(self, split: ImageSplit, transform: Callable[[Image.Image], torch.Tensor]) -> None:
        self.split, self.transform = split, transform

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.transform(self.split.load(i)), int(self.split.labels[i])


def extract(
    extractor: FeatureExtractor,
    transform: Callable[[Image.Image], torch.Tensor],
    train: ImageSplit,
    val: ImageSplit,
    test: ImageSplit,
    num_classes: int,
    *,
    device: str = "cpu",
    batch_size: int = 64,
    num_workers: int | None = None,
    progress: Callable[[float], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Features:
    dev = torch.device(device)
    amp = dev.type == "cuda"
    model = extractor.model.to(dev).eval()
    if amp:
        model = model.to(memory_format=torch.channels_last)
    if num_workers is None:
        num_workers = min(8, os.cpu_count() or 1) if amp else 0
    total = len(train) + len(val) + len(test)
    done = 0

    def run(split: ImageSplit, on_batch: Callable[[torch.Tensor, torch.Tensor], None]) -> None:
        nonlocal done
        loader = torch.utils.data.DataLoader(
            _TransformedSplit(split, transform), batch_size=batch_size, shuffle=False,
            num_workers=num_workers, pin_memory=amp,
        )
        for images, labels in loader:
            if should_stop is not None and should_stop():
                raise Cancelled("cancelled during extraction")
            images = images.to(dev, non_blocking=True)
            if amp:
                images = images.to(memory_format=torch.channels_last)
            with torch.inference_mode(), torch.autocast(dev.type, enabled=amp, dtype=torch.bfloat16):
                feats = extractor(images)
            on_batch(feats.float(), labels.to(dev))
            done += len(labels)
            if progress is not None:
                progress(done / total)

    acc: GramAccumulator | None = None
    kept: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}

    def keep(name: str) -> Callable[[torch.Tensor, torch.Tensor], None]:
        def on_batch(feats: torch.Tensor, labels: torch.Tensor) -> None:
            nonlocal acc
            if name == "train":
                if acc is None:
                    acc = GramAccumulator(feats.shape[1], num_classes, device=feats.device)
                acc.update(feats, labels)
            kept[name].append(feats.cpu().numpy())

        return on_batch

    for name, split in (("train", train), ("val", val), ("test", test)):
        run(split, keep(name))
    assert acc is not None
    return Features(
        stats=acc.result(),
        x_train=np.concatenate(kept["train"]).astype(np.float32),
        y_train=train.labels.copy(),
        x_val=np.concatenate(kept["val"]).astype(np.float32),
        y_val=val.labels.copy(),
        x_test=np.concatenate(kept["test"]).astype(np.float32),
        y_test=test.labels.copy(),
        pooling=extractor.pooling,
    )
