"""Splits whose samples are rows of an array rather than images: vectors from an embeddings file
(`embeddings:`) or texts (`text:`). They answer what `prepare_data` asks of a split (labels, identity,
subset) the way `ImageSplit` does, and carry no pixels."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from redundancy.errors import DatasetFormatError


@dataclass
class RowSplit:
    """`items[i]` is sample i: a float vector (items is (N, d)) or a text (items is a 1-d object array)."""

    items: np.ndarray
    labels: np.ndarray
    identity: str  # what determines this split's content (for the feature cache)
    pixels: None = None  # no images: the extractor never takes the batched image path

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, indices: np.ndarray) -> RowSplit:
        indices = np.asarray(indices, dtype=np.int64)
        digest = hashlib.sha256(np.ascontiguousarray(indices).tobytes()).hexdigest()[:16]
        return RowSplit(self.items[indices], self.labels[indices], f"{self.identity}[{digest}]")


def encode_labels(
    raw: dict[str, np.ndarray], where: str, classes: list[str] | None = None
) -> tuple[dict[str, np.ndarray], list[str]]:
    """Per-split labels as 0-based class indices, and the class names.

    Integer labels are class indices (names from `classes`, else `0 .. max`); string labels are
    mapped to the sorted set of names seen in any split. Anything else (floats, booleans, objects) is
    refused, and so is a split whose labels hold a single class."""
    kinds = {name: _label_kind(y, f"{where}: {name} labels") for name, y in raw.items()}
    if len(set(kinds.values())) > 1:
        raise DatasetFormatError(f"{where}: labels are integers in one split and strings in another")
    if next(iter(kinds.values())) == "str":
        names = sorted({str(v) for y in raw.values() for v in y.tolist()})
        index = {c: i for i, c in enumerate(names)}
        out = {k: np.asarray([index[str(v)] for v in y.tolist()], dtype=np.int64) for k, y in raw.items()}
        classes = names
    else:
        out = {k: y.astype(np.int64) for k, y in raw.items()}
        low = min(int(y.min()) for y in out.values() if len(y))
        if low < 0:
            raise DatasetFormatError(f"{where}: integer labels must be class indices ≥ 0, found {low}")
        if classes is None:
            classes = [str(i) for i in range(max(int(y.max()) for y in out.values() if len(y)) + 1)]
    for name, y in out.items():
        if len(y) == 0:
            raise DatasetFormatError(f"{where}: the {name} split is empty")
        present = np.unique(y)
        if len(present) < 2:
            only = int(present[0])
            raise DatasetFormatError(
                f"{where}: the {name} split has a single class ({classes[only] if only < len(classes) else only}); "
                "a probe needs at least two"
            )
    return out, classes


def _label_kind(y: np.ndarray, what: str) -> str:
    if y.ndim != 1:
        raise DatasetFormatError(f"{what} must be 1-d, got shape {y.shape}")
    if y.dtype.kind in "iu":
        return "int"
    if y.dtype.kind in "US":
        return "str"
    if y.dtype.kind == "O" and all(isinstance(v, str) for v in y.tolist()):
        return "str"
    raise DatasetFormatError(f"{what} must be integers or strings, got {_dtype_name(y)}")


def _dtype_name(y: np.ndarray) -> str:
    if y.dtype.kind == "O":
        kinds = sorted({type(v).__name__ for v in y.tolist()})
        return f"objects ({', '.join(kinds[:3])})"
    return str(y.dtype)
