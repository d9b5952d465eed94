"""Which neurons each probe sees, by `subsets` (`draw_subset`, the one place the rule lives):

- `independent` (default): `k = round(f·d)` drawn without replacement with a seeded RNG, anew for
  every k; a subset depends only on (master seed, d, k, seed).
- `nested` (the paper's protocol: `randperm(d)[:int(f·d)]` per seed): per seed one permutation of
  the d neurons, seeded by (master seed, d, seed), and the subset of size `k = floor(f·d)` is its
  first k entries, so a seed's smaller subsets are inside its larger ones.

Either way a subset never depends on the dataset, the other fractions or the probe, so analyses of
several datasets with the same model, layer and `subsets` probe the same indices and one index set
can serve every task (`redundancy.deploy.recommend_multitask`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from redundancy.config import SubsetMode


def fraction_to_k(fraction: float, d: int, mode: SubsetMode = "independent") -> int:
    """`round(f·d)` with halves rounded up (not Python's banker's rounding); `nested`: `floor(f·d)`,
    the paper's `int(f·d)` (a hair of tolerance for f·d a float just under an integer)."""
    if mode == "nested":
        return int(np.floor(fraction * d + 1e-9))
    return int(np.floor(fraction * d + 0.5))


def sample_subset(d: int, k: int, seed: int, master_seed: int = 0) -> np.ndarray:
    """A sorted subset of `k` of `d` neurons. Depends only on (master_seed, d, k, seed), so the
    same subset comes back whichever other fractions are requested alongside."""
    if k >= d:
        return np.arange(d)
    rng = np.random.default_rng([master_seed, d, k, seed])
    return np.sort(rng.choice(d, size=k, replace=False))


def seed_permutation(d: int, seed: int, master_seed: int = 0) -> np.ndarray:
    """The one permutation of `d` neurons a seed's nested subsets are prefixes of."""
    return np.random.default_rng([master_seed, d, seed, 0x4E53]).permutation(d)  # "NS"


def draw_subset(d: int, k: int, seed: int, master_seed: int = 0, mode: SubsetMode = "independent") -> np.ndarray:
    """The sorted neurons of subset `(k, seed)` under `mode` (see the module docstring)."""
    if mode == "nested":
        return np.arange(d) if k >= d else np.sort(seed_permutation(d, seed, master_seed)[:k])
    if mode == "independent":
        return sample_subset(d, k, seed, master_seed)
    raise ValueError(f"subsets must be 'independent' or 'nested', not {mode!r}")


@dataclass
class SubsetPlan:
    """The grid to probe: one entry per distinct `k`, with how many seeds it gets."""

    d: int
    entries: list[tuple[float, int, int]]  # (fraction, k, seeds)
    skipped: list[tuple[float, int, str]] = field(default_factory=list)  # (fraction, k, reason)

    @property
    def num_probes(self) -> int:
        return sum(s for _, _, s in self.entries)


def plan_subsets(fractions: list[float], d: int, seeds: int, mode: SubsetMode = "independent") -> SubsetPlan:
    """Map fractions to distinct `k`. A fraction whose `k` rounds to 0 or repeats a smaller
    fraction's `k` is reported as skipped rather than probed twice; the full layer gets one seed
    (every seed would draw the same subset)."""
    entries: list[tuple[float, int, int]] = []
    skipped: list[tuple[float, int, str]] = []
    seen: dict[int, float] = {}
    for f in sorted(set(fractions)):
        k = fraction_to_k(f, d, mode)
        if k == 0:
            rule = "floor" if mode == "nested" else "round"
            skipped.append((f, 0, f"k = {rule}({f} × {d}) = 0 neurons"))
            continue
        if k in seen:
            skipped.append((f, k, f"k = {k} is the same subset size as fraction {seen[k]}"))
            continue
        seen[k] = f
        entries.append((f, k, 1 if k == d else seeds))
    if d not in seen:
        entries.append((1.0, d, 1))
    return SubsetPlan(d=d, entries=entries, skipped=skipped)
