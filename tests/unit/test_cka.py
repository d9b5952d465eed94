from __future__ import annotations

import numpy as np
import pytest

from redundancy.probing.cka import GramCKA, linear_cka
from redundancy.sources.stats import GramStats


@pytest.mark.parametrize("k", [1, 5, 17, 30])
def test_cka_from_gram_equals_cka_on_explicit_features(k: int) -> None:
    rng = np.random.default_rng(k)
    x = rng.normal(size=(150, 30)) @ rng.normal(size=(30, 30)) + rng.uniform(0, 4, size=30)
    y = rng.integers(0, 3, size=150)
    stats = GramStats.from_features(x, y, 3)
    subset = np.sort(rng.choice(30, size=k, replace=False))
    fast = GramCKA(stats.centred_gram())(subset)
    slow = linear_cka(x[:, subset], x)
    assert fast == pytest.approx(slow, rel=1e-9)
    assert 0.0 < fast <= 1.0 + 1e-12


def test_cka_of_full_layer_is_one_and_grows_with_subset_size() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 64)) @ rng.normal(size=(64, 64))
    cka = GramCKA(GramStats.from_features(x, np.zeros(500, dtype=int), 1).centred_gram())
    assert cka(np.arange(64)) == pytest.approx(1.0)
    small = np.mean([cka(np.sort(rng.choice(64, 4, replace=False))) for _ in range(20)])
    large = np.mean([cka(np.sort(rng.choice(64, 40, replace=False))) for _ in range(20)])
    assert small < large < 1.0


def test_gram_cka_of_a_dead_subset_is_undefined_not_zero() -> None:
    import math

    from redundancy.probing.baselines import projection_cka

    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 8))
    x[:, [2, 5]] = 1.5  # dead neurons: constant
    g = GramStats.from_features(x, np.zeros(40, dtype=int), 1).centred_gram()
    cka = GramCKA(g)
    assert math.isnan(cka(np.array([2, 5])))
    assert math.isnan(linear_cka(x[:, [2, 5]], x))  # the slow computation agrees: undefined
    assert cka(np.array([2, 3])) == pytest.approx(linear_cka(x[:, [2, 3]], x))
    assert math.isnan(projection_cka(g, np.eye(8)[:, [2, 5]]))


def test_summary_mean_is_over_defined_cka_with_the_count() -> None:
    from redundancy.advice.recommend import summarize
    from redundancy.report import CurvePoint

    pts = [CurvePoint(fraction=0.1, k=1, seed=s, accuracy=0.5, per_class_accuracy=[0.5, 0.5], cka=c)
           for s, c in enumerate([0.2, None, 0.4])]
    pts.append(CurvePoint(fraction=1.0, k=10, seed=0, accuracy=0.9, per_class_accuracy=[0.9, 0.9], cka=1.0))
    s = summarize(pts)[0]
    assert s.cka_mean == pytest.approx(0.3) and s.cka_count == 2  # not (0.2 + 0 + 0.4) / 3
    none = summarize([pts[1], pts[3]])[0]
    assert none.cka_mean is None and none.cka_count == 0
