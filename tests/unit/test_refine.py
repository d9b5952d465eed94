"""Bisection of the minimal fraction on synthetic accuracy curves."""

from __future__ import annotations

import math

import numpy as np
import pytest

from redundancy.advice.refine import bracket, refine, resolution_to_k


def _curve(k: int) -> float:
    return 0.9 * (1.0 - math.exp(-k / 60.0))


def _true_boundary(threshold: float, d: int) -> int:
    return next(k for k in range(d + 1) if _curve(k) >= threshold)


@pytest.mark.parametrize("threshold", [0.5, 0.8, 0.855, 0.89])
def test_finds_the_exact_boundary_at_resolution_one(threshold: float) -> None:
    d = 2000
    k_star = _true_boundary(threshold, d)
    grid = [(k, _curve(k)) for k in (1, 2, 10, 40, 100, 200, 400, 1000, 1600, 1800, 2000)]
    k_fail, k_pass = bracket(grid, threshold)
    assert k_fail < k_star <= k_pass
    calls: list[int] = []

    def probe(k: int) -> float:
        calls.append(k)
        return _curve(k)

    points = refine(probe, k_fail, k_pass, threshold, resolution_k=1)
    assert min([k_pass] + [p.k for p in points if p.passed]) == k_star  # the smallest passing k found
    assert len(calls) == len(set(calls)) == len(points)
    assert all(k_fail < k < k_pass for k in calls)
    assert len(points) <= math.ceil(math.log2(k_pass - k_fail))
    assert all(p.passed == (p.value >= threshold) for p in points)


def test_stops_at_the_requested_resolution() -> None:
    d, threshold = 1280, 0.8
    k_star = _true_boundary(threshold, d)
    res = resolution_to_k(0.005, d)  # 0.5% of 1280 = 6.4 → 7 neurons
    assert res == 7
    k_fail, k_pass = 100, 1024
    points = refine(_curve, k_fail, k_pass, threshold, resolution_k=res)
    passing = [p.k for p in points if p.passed] + [k_pass]
    failing = [p.k for p in points if not p.passed] + [k_fail]
    lo, hi = max(failing), min(passing)
    assert hi - lo <= res and lo < k_star <= hi
    assert hi - lo > res // 2  # it did not bisect further than asked
    assert len(points) < len(refine(_curve, k_fail, k_pass, threshold, resolution_k=1))


def test_bracket_edges() -> None:
    assert bracket([(5, 0.1), (10, 0.2)], 0.5) is None
    assert bracket([(5, 0.9), (10, 0.95)], 0.5) == (0, 5)  # smallest tested already passes
    assert bracket([(10, 0.6), (5, 0.4), (20, 0.7)], 0.5) == (5, 10)  # order-free
    assert refine(_curve, 5, 6, 0.5) == []  # already at resolution
    with pytest.raises(ValueError):
        refine(_curve, 10, 10, 0.5)


def test_non_monotone_still_returns_a_boundary_and_honours_stop() -> None:
    rng = np.random.default_rng(0)
    noise = rng.normal(scale=0.02, size=3000)

    def noisy(k: int) -> float:
        return _curve(k) + noise[k]

    points = refine(noisy, 50, 2000, 0.8, resolution_k=1)
    passed = sorted(p.k for p in points if p.passed) + [2000]
    failed = sorted(p.k for p in points if not p.passed) + [50]
    assert min(passed) - max(failed) == 1  # adjacent pass/fail pair found
    stopped = refine(noisy, 50, 2000, 0.8, should_stop=lambda: True)
    assert stopped == []
