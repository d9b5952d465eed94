"""Which neurons each probe sees: `k = round(f·d)` drawn without replacement with a seeded RNG.

A subset depends only on (master seed, d, k, seed): never on the dataset, the other fractions or the
probe, so analyses of several datasets with the same model and layer probe the same indices and one
index set can serve every task (`redundancy.deploy.recommend_multitask`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def fraction_to_k(fraction: float, d: int) -> int:
    """`round(f·d)` with halves rounded up (not Python's banker's rounding)."""
    return int(np.floor(fraction * d + 0.5))


def sample_subset(d: int, k: int, seed: int, master_seed: int = 0) -> np.ndarray:
    """A sorted subset of `k` of `d` neurons. Depends only on (master_seed, d, k, seed), so the
    same subset comes back whichever other fractions are requested alongside."""
    if k >= d:
        return np.arange(d)
    rng = np.random.default_rng([master_seed, d, k, seed])
    return np.sort(rng.choice(d, size=k, replace=False))


@dataclass
class SubsetPlan:
    """The grid to probe: one entry per distinct `k`, with how many seeds it gets."""

    d: int
    entries: list[tuple[float, int, int]]  # (fraction, k, seeds)
    skipped: list[tuple[float, int, str]] = field(default_factory=list)  # (fraction, k, reason)

    @property
    def num_probes(self) -> int:
        return sum(s for _, _, s in self.entries)


def plan_subsets(fractions: list[float], d: int, seeds: int) -> SubsetPlan:
    """Map fractions to distinct `k`. A fraction whose `k` rounds to 0 or repeats a smaller
    fraction's `k` is reported as skipped rather than probed twice; the full layer gets one seed
    (every seed would draw the same subset)."""
    entries: list[tuple[float, int, int]] = []
    skipped: list[tuple[float, int, str]] = []
    seen: dict[int, float] = {}
    for f in sorted(set(fractions)):
        k = fraction_to_k(f, d)
        if k == 0:
            skipped.append((f, 0, f"k = round({f} × {d}) = 0 neurons"))
            continue
        if k in seen:
            skipped.append((f, k, f"k = {k} is the same subset size as fraction {seen[k]}"))
            continue
        seen[k] = f
        entries.append((f, k, 1 if k == d else seeds))
    if d not in seen:
        entries.append((1.0, d, 1))
    return SubsetPlan(d=d, entries=entries, skipped=skipped)
