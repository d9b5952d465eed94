"""Datasets by spec: `digits`, `npz:<path>`, `imagefolder:<root>`, and torchvision's
`cifar10`, `cifar100`, `oxford_pets`, `flowers102` under a data root."""

from redundancy.sources.datasets.base import ImageDataset, ImageSplit, balanced_subset
from redundancy.sources.datasets.registry import DATASET_SCHEMES, describe_datasets, load_dataset, parse_spec

__all__ = [
    "DATASET_SCHEMES",
    "ImageDataset",
    "ImageSplit",
    "balanced_subset",
    "describe_datasets",
    "load_dataset",
    "parse_spec",
]
