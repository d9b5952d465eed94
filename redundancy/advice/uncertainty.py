"""Uncertainty of a fraction's accuracy, and whether a recommendation survives stricter criteria.

Two sources of noise: which neurons were drawn (spread over seeds) and which test images were
drawn (a bootstrap over test samples). The bootstrap resamples test indices once per replicate
and applies the same indices to every seed (and, for the paired margin, to the full layer), so
correlations between seeds and between fraction and full layer are kept.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from redundancy.config import AnalysisConfig, DeltaMode

_EPS = 1e-12


def _as_matrix(correct: np.ndarray) -> np.ndarray:
    """`(seeds, n_test)` float matrix from a `(n_test,)` or `(seeds, n_test)` correctness array."""
    c = np.asarray(correct, dtype=np.float64)
    if c.ndim == 1:
        c = c[None, :]
    if c.ndim != 2 or c.shape[1] == 0:
        raise ValueError("correct must be (n_test,) or (seeds, n_test) with n_test > 0")
    return c


def bootstrap_accuracies(correct: np.ndarray, n_boot: int = 1000, seed: int = 0) -> np.ndarray:
    """`(n_boot,)` bootstrap replicates of the seed-mean accuracy.

    Replicate `b` draws `n_test` indices with replacement (`rng.integers(0, n, n)`, one call per
    replicate from `numpy.random.default_rng(seed)`) and scores every seed on those same samples.
    The mean over seeds of accuracy on the resample is the resample's mean of the per-sample mean
    over seeds, which is what is computed.
    """
    m = _as_matrix(correct).mean(0)
    n = m.shape[0]
    rng = np.random.default_rng(seed)
    return np.array([m[rng.integers(0, n, size=n)].mean() for _ in range(n_boot)])


def _interval(samples: np.ndarray, level: float) -> tuple[float, float]:
    if not 0.0 < level < 1.0:
        raise ValueError("level must be in (0, 1)")
    lo, hi = np.quantile(samples, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def bootstrap_ci(
    correct: np.ndarray, n_boot: int = 1000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the seed-mean test accuracy.

    Parameters
    ----------
    correct
        Per-sample correctness, `(n_test,)` for one probe or `(seeds, n_test)` for a fraction.
    """
    return _interval(bootstrap_accuracies(correct, n_boot, seed), level)


def paired_margin_ci(
    correct_at: np.ndarray,
    correct_full: np.ndarray,
    delta: float,
    mode: DeltaMode = "relative",
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Bootstrap interval of the margin `acc(f) − threshold(acc(1))` on the same resampled images.

    The threshold moves with the full layer's accuracy on each resample: `(1 − δ)·acc(1)`
    (relative) or `acc(1) − δ` (absolute). A lower bound ≥ 0 means δ holds with that confidence.
    """
    at, full = _as_matrix(correct_at).mean(0), _as_matrix(correct_full).mean(0)
    if at.shape != full.shape:
        raise ValueError("correct_at and correct_full must cover the same test samples")
    n = at.shape[0]
    rng = np.random.default_rng(seed)
    margins = np.empty(n_boot)
    for b in range(n_boot):
        idx = rng.integers(0, n, size=n)
        a, f = at[idx].mean(), full[idx].mean()
        margins[b] = a - ((1.0 - delta) * f if mode == "relative" else f - delta)
    return _interval(margins, level)


@dataclass
class PairedBootstrap:
    """Per-sample test correctness by subset size k (`(seeds, n_test)`), to bootstrap the margin of a
    fraction over its threshold with the full layer (k = d) resampled on the same images."""

    correct: Mapping[int, np.ndarray]
    d: int
    n_boot: int = 1000
    level: float = 0.95
    seed: int = 0

    def covers(self, k: int) -> bool:
        return k in self.correct and self.d in self.correct and self.n_boot > 0

    def margin_ci(self, k: int, delta: float, mode: DeltaMode) -> tuple[float, float]:
        return paired_margin_ci(self.correct[k], self.correct[self.d], delta, mode, self.n_boot, self.level,
                                self.seed)

    def describe(self) -> str:
        return (f"paired bootstrap of (seed-mean accuracy − threshold): {self.n_boot} resamples of the test "
                f"images, {100 * self.level:g}% percentile interval, bootstrap seed {self.seed}; every seed at "
                "this k and the full layer are scored on the same resample, so the threshold moves with it")


@dataclass
class FractionUncertainty:
    """Seed spread and test-sample confidence interval of one fraction's accuracy."""

    seeds: int
    accuracy_mean: float
    accuracy_std: float  # over seeds, ddof=1 (0 for one seed)
    accuracy_min: float  # the worst seed
    ci_low: float | None  # bootstrap over test samples, None without per-sample correctness
    ci_high: float | None


def fraction_uncertainty(
    seed_accuracies: Sequence[float],
    correct: np.ndarray | None = None,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> FractionUncertainty:
    """Mean, std and worst seed of a fraction's accuracies, with the bootstrap CI when `correct`
    (`(seeds, n_test)` per-sample correctness) is given."""
    acc = np.asarray(seed_accuracies, dtype=np.float64)
    if acc.size == 0:
        raise ValueError("no seed accuracies")
    lo = hi = None
    if correct is not None:
        lo, hi = bootstrap_ci(correct, n_boot, level, seed)
    return FractionUncertainty(
        seeds=int(acc.size),
        accuracy_mean=float(acc.mean()),
        accuracy_std=float(acc.std(ddof=1)) if acc.size > 1 else 0.0,
        accuracy_min=float(acc.min()),
        ci_low=lo,
        ci_high=hi,
    )


@dataclass
class Robustness:
    """Whether a recommended fraction meets its threshold under stricter readings of the data."""

    threshold: float
    holds_mean: bool  # seed-mean accuracy ≥ threshold
    holds_worst_seed: bool  # every seed ≥ threshold
    holds_ci_lower: bool | None  # the CI's lower bound ≥ threshold (None: no CI)
    holds_paired_margin: bool | None  # paired margin's lower bound ≥ 0 (None: not computed)
    worst_seed_accuracy: float
    ci_low: float | None
    margin_low: float | None


def holds_under(
    seed_accuracies: Sequence[float],
    threshold: float,
    ci: tuple[float, float] | None = None,
    margin_ci: tuple[float, float] | None = None,
) -> Robustness:
    """Check a recommended fraction's accuracies against the threshold it was chosen by.

    Parameters
    ----------
    seed_accuracies
        Test accuracy per seed at the recommended fraction.
    threshold
        The accuracy the criterion had to reach (`Recommendation.threshold`).
    ci
        `bootstrap_ci` of the fraction's seed-mean accuracy, if per-sample correctness is known.
    margin_ci
        `paired_margin_ci` against the full layer, if computed.
    """
    acc = np.asarray(seed_accuracies, dtype=np.float64)
    if acc.size == 0:
        raise ValueError("no seed accuracies")
    return Robustness(
        threshold=float(threshold),
        holds_mean=bool(acc.mean() >= threshold - _EPS),
        holds_worst_seed=bool(acc.min() >= threshold - _EPS),
        holds_ci_lower=None if ci is None else bool(ci[0] >= threshold - _EPS),
        holds_paired_margin=None if margin_ci is None else bool(margin_ci[0] >= -_EPS),
        worst_seed_accuracy=float(acc.min()),
        ci_low=None if ci is None else float(ci[0]),
        margin_low=None if margin_ci is None else float(margin_ci[0]),
    )


def bootstrap_intervals(config: AnalysisConfig, correct: dict[int, list[np.ndarray]]) -> dict[int, tuple[float, float]]:
    """The percentile bootstrap interval of each k's seed-mean accuracy over test images."""
    intervals: dict[int, tuple[float, float]] = {}
    if config.bootstrap > 0:
        for k, arrays in correct.items():
            accs = [float(a.mean()) for a in arrays]
            u = fraction_uncertainty(accs, np.stack(arrays), config.bootstrap, config.ci_level, config.seed)
            if u.ci_low is not None and u.ci_high is not None:
                intervals[k] = (u.ci_low, u.ci_high)
    return intervals
