"""Bootstrap intervals against the slow computation, their coverage, and the robustness checks."""

from __future__ import annotations

import numpy as np
import pytest

from redundancy.advice.uncertainty import (
    bootstrap_accuracies,
    bootstrap_ci,
    fraction_uncertainty,
    holds_under,
    paired_margin_ci,
)


def _slow_ci(correct: np.ndarray, n_boot: int, level: float, seed: int) -> tuple[float, float]:
    """Per replicate: resample test indices, score each seed on them, average over seeds."""
    rng = np.random.default_rng(seed)
    n = correct.shape[1]
    reps = []
    for _ in range(n_boot):
        idx = rng.integers(0, n, size=n)
        reps.append(np.mean([row[idx].mean() for row in correct]))
    alpha = (1 - level) / 2
    return float(np.percentile(reps, 100 * alpha)), float(np.percentile(reps, 100 * (1 - alpha)))


def test_matches_slow_percentile_bootstrap_over_seeds() -> None:
    rng = np.random.default_rng(0)
    correct = rng.random((5, 300)) < rng.uniform(0.5, 0.9, size=(5, 1))
    assert bootstrap_ci(correct, n_boot=500, level=0.9, seed=7) == pytest.approx(
        _slow_ci(correct, 500, 0.9, 7), abs=1e-12
    )
    # one probe: a vector is the one-seed case
    assert bootstrap_ci(correct[0], n_boot=200, seed=1) == pytest.approx(_slow_ci(correct[:1], 200, 0.95, 1))


def test_interval_contains_the_mean_and_shrinks_with_n() -> None:
    rng = np.random.default_rng(1)
    small = rng.random(100) < 0.8
    large = rng.random(10_000) < 0.8
    lo_s, hi_s = bootstrap_ci(small, n_boot=400)
    lo_l, hi_l = bootstrap_ci(large, n_boot=400)
    assert lo_s <= small.mean() <= hi_s and lo_l <= large.mean() <= hi_l
    assert (hi_l - lo_l) < (hi_s - lo_s) / 5
    # the binomial standard error sets the width: ≈ 2·1.96·sqrt(p(1−p)/n)
    assert hi_l - lo_l == pytest.approx(2 * 1.96 * np.sqrt(0.16 / 10_000), rel=0.2)


def test_coverage_is_near_nominal() -> None:
    rng = np.random.default_rng(2)
    p, hits, reps = 0.7, 0, 200
    for r in range(reps):
        lo, hi = bootstrap_ci(rng.random(200) < p, n_boot=300, level=0.9, seed=r)
        hits += lo <= p <= hi
    assert 0.82 <= hits / reps <= 0.97


def test_seeds_share_resampled_indices() -> None:
    # two identical seeds: the replicate distribution equals the single-seed one exactly
    x = np.random.default_rng(3).random(150) < 0.6
    twice = bootstrap_accuracies(np.stack([x, x]), 100, 4)
    np.testing.assert_allclose(twice, bootstrap_accuracies(x, 100, 4))


def test_paired_margin() -> None:
    rng = np.random.default_rng(5)
    full = rng.random(2000) < 0.9
    at = full & (rng.random(2000) < 0.97)  # loses ~3% of the full layer's hits, paired
    lo, hi = paired_margin_ci(at, full, delta=0.05, n_boot=400)
    point = at.mean() - 0.95 * full.mean()
    assert lo <= point <= hi and lo > 0  # a 3% loss is within δ = 5% with confidence
    lo2, _ = paired_margin_ci(at, full, delta=0.01, n_boot=400)
    assert lo2 < 0  # and not within δ = 1%
    lo_abs, hi_abs = paired_margin_ci(at, full, delta=0.05, mode="absolute", n_boot=400)
    assert lo_abs <= at.mean() - (full.mean() - 0.05) <= hi_abs
    # pairing: the margin's interval is far narrower than the two unpaired intervals
    a_lo, a_hi = bootstrap_ci(at, 400)
    assert hi - lo < (a_hi - a_lo) / 2
    with pytest.raises(ValueError):
        paired_margin_ci(at[:10], full, 0.05)


def test_fraction_uncertainty_and_holds_under() -> None:
    u = fraction_uncertainty([0.80, 0.84, 0.82])
    assert u.accuracy_mean == pytest.approx(0.82) and u.accuracy_min == 0.80
    assert u.accuracy_std == pytest.approx(np.std([0.80, 0.84, 0.82], ddof=1))
    assert u.ci_low is None
    one = fraction_uncertainty([0.5])
    assert one.accuracy_std == 0.0

    r = holds_under([0.80, 0.84, 0.82], threshold=0.81, ci=(0.805, 0.835), margin_ci=(0.002, 0.02))
    assert r.holds_mean and not r.holds_worst_seed and not r.holds_ci_lower and r.holds_paired_margin
    r2 = holds_under([0.82, 0.84], threshold=0.81, ci=(0.812, 0.85))
    assert r2.holds_mean and r2.holds_worst_seed and r2.holds_ci_lower and r2.holds_paired_margin is None
    r3 = holds_under([0.80], threshold=0.81)
    assert not r3.holds_mean and r3.holds_ci_lower is None
