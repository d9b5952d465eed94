"""Where extracted features live: float64 statistics plus memory-mapped per-split feature files.

A store is a directory:

    stats.npz                 the train split's `GramStats` (`save_stats` / `load_stats`)
    x_val.npy, x_test.npy     (rows, d) float16 by default, float32 on request; memory-mapped on read
    x_train.npy               only where a probe needs train samples (the logistic probe)
    y_*.npy                   int64 labels
    meta.json                 written last: its presence marks the store complete

Feature files are written as a stream (a `.npy` header, then one `write` per batch), so neither the
writer nor the reader ever holds a split in memory: a reader gets `np.memmap`s whose pages the
kernel loads and drops on demand. Statistics stay float64 and are computed from the unrounded
features; only the stored samples are rounded to the storage dtype.

Shard statistics are plain files too, so a partial pass on another worker can be saved, loaded and
summed: `save_stats`, `load_stats`, `sum_stats`.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO, Literal

import numpy as np

from redundancy.errors import FeatureRangeError, RedundancyError
from redundancy.sources.stats import GramStats

FeatureDtype = Literal["float16", "float32"]
STORE_FORMAT = 1
STATS_FORMAT = 1
_FLOAT16_MAX = float(np.finfo(np.float16).max)


# Statistics ---------------------------------------------------------------------------------------


def save_stats(stats: GramStats, path: Path | str) -> Path:
    """Write `stats` to `path` (an `.npz`), atomically: a reader sees the old file or the new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.savez(f, format=np.asarray(STATS_FORMAT), **stats.to_arrays())
    os.replace(tmp, path)
    return path


def load_stats(path: Path | str) -> GramStats:
    """Read statistics written by `save_stats`: a clear error (field `stats`) for a missing, foreign,
    unreadable or inconsistent file (shapes that disagree, class counts that do not sum to n)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as a:
            fmt = int(a["format"]) if "format" in a.files else None
            if fmt != STATS_FORMAT:
                raise RedundancyError(f"{path}: not a statistics file of format {STATS_FORMAT} (found {fmt})",
                                      field="stats")
            stats = GramStats.from_arrays({k: a[k] for k in a.files if k != "format"})
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise RedundancyError(f"{path}: cannot read statistics ({exc})", field="stats") from exc
    d, c = stats.d, stats.num_classes
    for name, shape in {"gram": (d, d), "class_sums": (c, d)}.items():
        if getattr(stats, name).shape != shape:
            raise RedundancyError(f"{path}: {name} has shape {getattr(stats, name).shape}, not {shape}",
                                  field="stats")
    if int(stats.class_counts.sum()) != stats.n:
        raise RedundancyError(f"{path}: class counts sum to {int(stats.class_counts.sum())}, not n = {stats.n}",
                              field="stats")
    return stats


def sum_stats(parts: Sequence[GramStats]) -> GramStats:
    """The statistics of the union of disjoint row sets: every field is a sum.

    `n = Σ nᵢ`, `Σx = Σ Σxᵢ`, `XᵀX = Σ XᵢᵀXᵢ`, class sums and counts likewise. The parts must agree
    on the width `d` and the number of classes."""
    if not parts:
        raise ValueError("sum_stats needs at least one part")
    d, c = parts[0].d, parts[0].num_classes
    for i, p in enumerate(parts):
        if (p.d, p.num_classes) != (d, c):
            raise ValueError(f"part {i} has d={p.d}, {p.num_classes} classes; part 0 has d={d}, {c} classes")
    out = GramStats.empty(d, c)
    for p in parts:
        out.n += p.n
        out.total += p.total
        out.gram += p.gram
        out.class_sums += p.class_sums
        out.class_counts += p.class_counts
    return out


# Feature files ------------------------------------------------------------------------------------


class FeatureWriter:
    """Streams an (rows, d) matrix into a `.npy` file, batch by batch, in the storage dtype.

    `rows` is known up front (the split's length); `d` is taken from the first batch. `close()`
    checks that exactly `rows` rows arrived."""

    def __init__(self, path: Path, rows: int, dtype: FeatureDtype) -> None:
        self.path, self.rows, self.dtype = Path(path), int(rows), np.dtype(dtype)
        self.written = 0
        self.d: int | None = None
        self._file: BinaryIO | None = None

    def append(self, batch: np.ndarray) -> None:
        batch = np.asarray(batch)
        if batch.ndim != 2:
            raise ValueError(f"a feature batch must be 2-d, got shape {batch.shape}")
        if self._file is None:
            self.d = int(batch.shape[1])
            self._file = open(self.path, "wb")  # noqa: SIM115 (closed in close())
            header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False,
                      "shape": (self.rows, self.d)}
            np.lib.format.write_array_header_1_0(self._file, header)
        if batch.shape[1] != self.d:
            raise ValueError(f"batch width {batch.shape[1]} differs from the first batch's {self.d}")
        if self.written + len(batch) > self.rows:
            raise ValueError(f"{self.path.name}: more than the {self.rows} announced rows")
        if self.dtype == np.float16 and len(batch) and float(np.abs(batch).max()) > _FLOAT16_MAX:
            raise FeatureRangeError(
                f"features reach {float(np.abs(batch).max()):.4g}, beyond float16's range (±{_FLOAT16_MAX:g}); "
                "store them as float32 (feature_dtype = 'float32')"
            )
        self._file.write(np.ascontiguousarray(batch, dtype=self.dtype).data)
        self.written += len(batch)

    def close(self) -> None:
        if self._file is None:
            raise ValueError(f"{self.path.name}: no rows were written")
        self._file.close()
        if self.written != self.rows:
            raise ValueError(f"{self.path.name}: {self.written} rows written, {self.rows} announced")

    def abort(self) -> None:
        if self._file is not None and not self._file.closed:
            self._file.close()


def write_meta(store: Path, meta: dict[str, object]) -> None:
    """Mark a store complete (written last, atomically)."""
    tmp = store / ".meta.json.tmp"
    tmp.write_text(json.dumps({"format": STORE_FORMAT, **meta}, sort_keys=True))
    os.replace(tmp, store / "meta.json")


def read_meta(store: Path) -> dict[str, object] | None:
    """The store's metadata, or None when it is absent, incomplete or of another format."""
    try:
        meta = json.loads((Path(store) / "meta.json").read_text())
    except (OSError, ValueError):
        return None
    return meta if meta.get("format") == STORE_FORMAT else None


def open_array(path: Path) -> np.ndarray:
    """A stored feature matrix as a memory map (no copy into memory; copy-on-write, so the file never changes)."""
    return np.load(path, mmap_mode="c", allow_pickle=False)
