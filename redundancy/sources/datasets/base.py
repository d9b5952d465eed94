"""Image splits as the extractor sees them: an indexable sequence of RGB PIL images and labels."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from redundancy.errors import DatasetFormatError


def to_rgb_image(array: np.ndarray) -> Image.Image:
    """uint8 (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) → an RGB PIL image (grey is replicated)."""
    a = np.asarray(array)
    if a.dtype != np.uint8:
        raise DatasetFormatError(f"images must be uint8, got {a.dtype}")
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim == 2:
        return Image.fromarray(a, mode="L").convert("RGB")
    if a.ndim == 3 and a.shape[2] in (3, 4):
        return Image.fromarray(a[:, :, :3], mode="RGB")
    raise DatasetFormatError(f"an image must be (H, W), (H, W, 1|3|4); got shape {a.shape}")


@dataclass(frozen=True)
class PixelSource:
    """The split's images as one uint8 array, (N, H, W) or (N, H, W, 1|3|4), and which rows are ours."""

    images: np.ndarray
    rows: np.ndarray | None = None  # None: all, in order

    @classmethod
    def of(cls, images: object) -> PixelSource | None:
        """A source for arrays the batched device transform can read; None for anything else."""
        if not isinstance(images, np.ndarray) or images.dtype != np.uint8:
            return None
        if images.ndim == 3 or (images.ndim == 4 and images.shape[3] in (1, 3, 4)):
            return cls(images)
        return None

    def take(self, indices: np.ndarray) -> np.ndarray:
        """uint8 pixels of the split's images `indices` (positions within the split)."""
        rows = indices if self.rows is None else self.rows[indices]
        return self.images[rows]

    def subset(self, indices: np.ndarray) -> PixelSource:
        return PixelSource(self.images, indices if self.rows is None else self.rows[indices])


@dataclass
class ImageSplit:
    """`load(i)` returns image i as RGB; `labels` are 0-based class indices.

    `pixels`, where the split is backed by one uint8 array, lets the extractor upload whole batches
    and transform them on the device instead of image by image in PIL."""

    load: Callable[[int], Image.Image]
    labels: np.ndarray
    identity: str  # what determines this split's content (for the feature cache)
    pixels: PixelSource | None = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, indices: np.ndarray) -> ImageSplit:
        indices = np.asarray(indices, dtype=np.int64)
        base = self.load
        return ImageSplit(
            load=lambda i: base(int(indices[i])),
            labels=self.labels[indices],
            identity=f"{self.identity}[{_digest(indices)}]",
            pixels=self.pixels.subset(indices) if self.pixels is not None else None,
        )

    @classmethod
    def from_arrays(cls, images: np.ndarray | Sequence[np.ndarray], labels: np.ndarray, identity: str) -> ImageSplit:
        labels = np.asarray(labels)
        if len(images) != len(labels):
            raise DatasetFormatError(
                f"{identity}: {len(images)} images but {len(labels)} labels; they must have the same length"
            )
        return cls(
            load=lambda i: to_rgb_image(images[i]), labels=labels.astype(np.int64), identity=identity,
            pixels=PixelSource.of(images),
        )


@dataclass
class ImageDataset:
    spec: str
    classes: list[str]
    train: ImageSplit
    test: ImageSplit
    # explicit retrieval pairs (`embeddings:` .npz with corpus/queries/qrels): (m, 2) int64 rows of
    # (query = test row, relevant corpus item = train row); None: relevance is the label
    qrels: np.ndarray | None = None

    def __post_init__(self) -> None:
        c = len(self.classes)
        if c < 2:
            raise DatasetFormatError(f"{self.spec}: need at least 2 classes, found {c}")
        for name, split in (("train", self.train), ("test", self.test)):
            if len(split) == 0:
                raise DatasetFormatError(f"{self.spec}: the {name} split is empty")
            lo, hi = int(split.labels.min()), int(split.labels.max())
            if lo < 0 or hi >= c:
                raise DatasetFormatError(
                    f"{self.spec}: {name} labels span {lo}..{hi} but there are {c} classes (0..{c - 1})"
                )


def balanced_subset(labels: np.ndarray, cap: int, seed: int) -> np.ndarray:
    """At most `cap` indices, as equal across classes as the data allow, seeded; sorted.

    Classes are shuffled within themselves and dealt round-robin, so a class with too few samples
    gives its share to the others.
    """
    labels = np.asarray(labels)
    if cap >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng([seed, cap, len(labels)])
    pools = [rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)]
    depth = max(len(p) for p in pools)
    dealt = np.full((depth, len(pools)), -1, dtype=np.int64)
    for j, p in enumerate(pools):
        dealt[: len(p), j] = p
    order = dealt.ravel()
    order = order[order >= 0]
    return np.sort(order[:cap])


def _digest(indices: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(indices).tobytes()).hexdigest()[:16]


def validation_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified, seeded (fit, val) index arrays: about `fraction` of each class goes to val,
    at least one where a class has two or more samples."""
    labels = np.asarray(labels)
    rng = np.random.default_rng([seed, 7919, len(labels)])
    val: list[np.ndarray] = []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        take = min(max(int(round(fraction * len(idx))), 1), len(idx) - 1) if len(idx) >= 2 else 0
        val.append(idx[:take])
    val_idx = np.sort(np.concatenate(val)) if val else np.zeros(0, dtype=np.int64)
    fit_idx = np.setdiff1d(np.arange(len(labels)), val_idx)
    return fit_idx, val_idx
