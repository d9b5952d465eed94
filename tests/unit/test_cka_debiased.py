"""Debiased CKA and the fast subset CKA against the slow n × n computations."""

from __future__ import annotations

from itertools import permutations

import numpy as np
import pytest

from redundancy.probing.cka import (
    FeatureCKA,
    GramCKA,
    debiased_linear_cka,
    independent_subset_pair,
    linear_cka,
)
from redundancy.sources.stats import GramStats


def _features(n: int = 60, d: int = 25, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n, 5))
    x = latent @ rng.normal(size=(5, d)) + 0.7 * rng.normal(size=(n, d))
    return x * rng.uniform(0.3, 3, size=d) + rng.uniform(-5, 5, size=d)


def _hsic_u_brute(k: np.ndarray, l: np.ndarray) -> float:
    """HSIC as the U-statistic over distinct index tuples (Song et al. 2012, eq. 5), by brute force."""
    n = k.shape[0]
    t1 = np.mean([k[i, j] * l[i, j] for i, j in permutations(range(n), 2)])
    t2 = np.mean([k[i, j] * l[q, r] for i, j, q, r in permutations(range(n), 4)])
    t3 = np.mean([k[i, j] * l[i, q] for i, j, q in permutations(range(n), 3)])
    return float(t1 + t2 - 2 * t3)


def test_debiased_matches_u_statistic_form() -> None:
    x = _features(n=9)
    y = x[:, :7] + 0.5 * np.random.default_rng(1).normal(size=(9, 7))
    xc, yc = x - x.mean(0), y - y.mean(0)
    k, l = xc @ xc.T, yc @ yc.T
    ref = _hsic_u_brute(k, l) / np.sqrt(_hsic_u_brute(k, k) * _hsic_u_brute(l, l))
    assert debiased_linear_cka(x, y) == pytest.approx(ref, rel=1e-9)


def test_debiased_properties() -> None:
    x = _features()
    assert debiased_linear_cka(x, x) == pytest.approx(1.0)
    # invariant to isotropic scaling and orthogonal transforms, like CKA itself
    q, _ = np.linalg.qr(np.random.default_rng(2).normal(size=(25, 25)))
    assert debiased_linear_cka(x, 3.0 * x @ q) == pytest.approx(1.0)
    # unrelated features: the biased estimator is inflated at small n, the debiased one is near 0
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(40, 30)), rng.normal(size=(40, 30))
    assert linear_cka(a, b) > 0.4
    assert abs(debiased_linear_cka(a, b)) < 0.1
    with pytest.raises(ValueError):
        debiased_linear_cka(a[:3], b[:3])


@pytest.mark.parametrize("debiased", [False, True])
def test_feature_cka_matches_slow_paths(debiased: bool) -> None:
    x = _features()
    slow = debiased_linear_cka if debiased else linear_cka
    fast = FeatureCKA(x)
    rng = np.random.default_rng(4)
    tol = {"rel": 1e-8, "abs": 1e-10}
    for k in (1, 4, 12, 25):
        s = np.sort(rng.choice(25, size=k, replace=False))
        t = np.sort(rng.choice(25, size=k, replace=False))
        assert fast.part_whole(s, debiased=debiased) == pytest.approx(slow(x[:, s], x), **tol)
        assert fast.pair(s, t, debiased=debiased) == pytest.approx(slow(x[:, s], x[:, t]), **tol)
        s2, t2 = independent_subset_pair(25, k, seed=5)
        expected = slow(x[:, s2], x[:, t2])
        assert fast.subset_subset(k, seed=5, debiased=debiased) == pytest.approx(expected, **tol)


def test_biased_part_whole_agrees_with_gram_cka() -> None:
    x = _features()
    g = GramStats.from_features(x, np.zeros(len(x), dtype=int), 1).centred_gram()
    s = np.array([0, 3, 9, 20])
    assert FeatureCKA(x).part_whole(s) == pytest.approx(GramCKA(g)(s), rel=1e-10)


def test_independent_pairs_are_seeded_and_can_overlap() -> None:
    s, t = independent_subset_pair(100, 50, seed=0)
    s2, t2 = independent_subset_pair(100, 50, seed=0)
    np.testing.assert_array_equal(s, s2)
    np.testing.assert_array_equal(t, t2)
    assert len(s) == len(t) == 50 and len(np.unique(s)) == 50
    assert not np.array_equal(s, t)
    assert len(np.intersect1d(s, t)) > 0  # independent draws of half the layer overlap
    full_s, full_t = independent_subset_pair(10, 10, seed=0)
    np.testing.assert_array_equal(full_s, np.arange(10))


def test_cka_of_a_subset_without_variance_is_undefined_not_zero() -> None:
    import math

    from redundancy.probing.cka import FeatureCKA

    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 6))
    x[:, :2] = 3.0  # two dead (constant) neurons
    fc = FeatureCKA(x)
    assert math.isnan(fc.part_whole(np.array([0, 1])))
    assert math.isnan(fc.pair(np.array([0]), np.array([1]), debiased=True))
    assert 0.0 < fc.part_whole(np.array([0, 2])) <= 1.0  # a live neuron makes it defined again


def test_debiased_cka_is_undefined_when_both_self_hsics_are_negative() -> None:
    """Rounding can leave both self-HSIC estimates of near-dead neurons slightly negative; their product is
    positive, which must not pass for a CKA. The ratio is defined only when both are positive."""
    import math

    from redundancy.probing.cka import FeatureCKA, _ratio

    assert math.isnan(_ratio(1e-18, -1e-17, -2e-17))  # the sign case: positive product, still undefined
    assert math.isnan(_ratio(0.3, 0.0, 1.0)) and math.isnan(_ratio(0.3, 1.0, -1.0))
    assert _ratio(0.3, 0.25, 4.0) == pytest.approx(0.3)

    fc = FeatureCKA(np.random.default_rng(0).normal(size=(20, 4)))
    fc._debias = lambda *terms: -1.0  # type: ignore[method-assign]  # every unbiased HSIC negative
    assert math.isnan(fc.pair(np.array([0]), np.array([1]), debiased=True))
    assert not math.isnan(fc.pair(np.array([0]), np.array([1])))  # the biased estimator is untouched
