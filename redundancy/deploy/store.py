"""The statistics a head is fitted from, kept as a file: `n`, `Σx`, `XᵀX`, class sums and counts.

A job keeps the train split's `GramStats` so that a head for any δ can be fitted later without
touching the images again. One `.npz` (no pickles), written atomically; reading checks that every
array is there and that the shapes agree.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from redundancy.deploy.errors import ArtifactError
from redundancy.stats import GramStats

STATS_FORMAT = "redundancy-gram-stats/1"


def save_stats(stats: GramStats, path: str | Path) -> Path:
    """Write `stats` to `path` (.npz), atomically. Returns the path written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
    np.savez(tmp, format=np.asarray(STATS_FORMAT), **stats.to_arrays())
    os.replace(tmp, path)
    return path


def load_stats(path: str | Path) -> GramStats:
    """Read statistics written by `save_stats`; an unreadable or inconsistent file is an ArtifactError."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"statistics file not found: {path}", field="stats")
    try:
        with np.load(path, allow_pickle=False) as a:
            arrays = {k: a[k] for k in a.files}
    except Exception as exc:
        raise ArtifactError(f"{path.name} is not a readable statistics file ({exc})", field="stats") from exc
    if str(arrays.get("format", "")) != STATS_FORMAT:
        raise ArtifactError(f"{path.name} is not a {STATS_FORMAT} file", field="stats")
    try:
        stats = GramStats.from_arrays(arrays)
    except KeyError as exc:
        raise ArtifactError(f"{path.name} has no {exc.args[0]!r} array", field="stats") from exc
    d, c = stats.d, stats.num_classes
    shapes = {"gram": (d, d), "class_sums": (c, d)}
    for name, shape in shapes.items():
        if getattr(stats, name).shape != shape:
            raise ArtifactError(f"{path.name}: {name} has shape {getattr(stats, name).shape}, not {shape}",
                                field="stats")
    if int(stats.class_counts.sum()) != stats.n:
        raise ArtifactError(f"{path.name}: class counts sum to {int(stats.class_counts.sum())}, not n = {stats.n}",
                            field="stats")
    return stats
