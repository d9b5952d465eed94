"""Advice over a stored curve, and the fairness metrics against slow definitions."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from redundancy.advice.fairness import coefficient_of_variation, gini
from redundancy.advice.recommend import recommend, summarize
from redundancy.errors import InvalidConfigError
from redundancy.report import CurvePoint

CLASSES = ["a", "b", "c"]


def _curve() -> list[CurvePoint]:
    pts = []
    table = {  # k: per-seed accuracies
        10: [0.50, 0.60],
        50: [0.86, 0.80],
        80: [0.89, 0.885],
        100: [0.90],
    }
    for k, accs in table.items():
        for s, a in enumerate(accs):
            pc = [min(1.0, a + 0.08), a, max(0.0, a - 0.08)] if k < 100 else [0.93, 0.90, 0.87]
            pts.append(CurvePoint(fraction=k / 100, k=k, seed=s, accuracy=a, per_class_accuracy=pc, cka=k / 100))
    return pts


def test_minimal_fraction_relative_absolute_and_worst_seed() -> None:
    curve = _curve()
    # relative δ=0.05: bar 0.855; mean at k=50 is 0.83 → fails; k=80 mean 0.8875 → passes
    r = recommend(curve, CLASSES, 100, 0.05, "relative")
    assert (r.fraction, r.k, r.met_below_full) == (0.8, 80, True)
    assert r.dr == pytest.approx(0.2)
    assert r.threshold == pytest.approx(0.855)
    # absolute δ=0.08: bar 0.82 → k=50 mean 0.83 passes, but its worst seed 0.80 does not
    assert recommend(curve, CLASSES, 100, 0.08, "absolute").k == 50
    strict = recommend(curve, CLASSES, 100, 0.08, "absolute", "worst_seed")
    assert strict.k == 80 and strict.accuracy == pytest.approx(0.885)


def test_no_fraction_meets_delta_gives_full_layer_and_says_so() -> None:
    r = recommend(_curve(), CLASSES, 100, 0.0, "relative")
    assert r.fraction == 1.0 and r.k == 100 and r.dr == 0.0 and not r.met_below_full
    assert "No tested fraction below 1" in r.note
    assert r.fairness.gini_change == pytest.approx(0.0)


def test_fairness_cost_at_the_recommendation_is_per_seed() -> None:
    r = recommend(_curve(), CLASSES, 100, 0.05, "relative")
    f = r.fairness
    seeds = np.array([[0.89 + 0.08, 0.89, 0.89 - 0.08], [0.885 + 0.08, 0.885, 0.885 - 0.08]])  # k = 80
    full = np.array([0.93, 0.90, 0.87])
    ginis = [gini(v) for v in seeds]
    assert f.gini_at == pytest.approx(np.mean(ginis)) and f.gini_full == pytest.approx(gini(full))
    assert f.gini_at != pytest.approx(gini(seeds.mean(0)), abs=1e-9)  # not the Gini of the mean vector
    assert f.gini_at_std == pytest.approx(np.std(ginis, ddof=1)) and f.seeds_at == 2 and f.seeds_full == 1
    assert f.gini_change == pytest.approx(np.mean(ginis) - gini(full)) and f.gini_change > 0
    assert f.worst_class_at == pytest.approx(seeds.min(1).mean())
    assert f.range_change == pytest.approx(0.16 - 0.06)
    assert [c.cls for c in f.most_hurt_classes] == ["c", "b"]  # "a" gained
    assert f.most_hurt_classes[0].change == pytest.approx((seeds[:, 2] - 0.87).mean())


def test_per_seed_fairness_can_disagree_in_sign_with_the_mean_vector() -> None:
    """Two seeds with opposite errors: each is unequal, their mean vector is perfectly equal."""
    from redundancy.advice.fairness import fairness_cost

    full = np.array([0.8, 0.8])
    at = np.array([[0.9, 0.7], [0.7, 0.9]])
    f = fairness_cost(full, at, ["x", "y"])
    assert gini(at.mean(0)) == pytest.approx(0.0)  # the old, seed-averaged reading: no cost
    assert f.gini_change == pytest.approx(gini(at[0])) and f.gini_change > 0.05
    assert f.worst_class_change == pytest.approx(-0.1) and f.most_hurt_classes == []


def test_gini_and_cv_equal_their_slow_definitions() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        a = rng.uniform(0, 1, size=rng.integers(2, 30))
        slow = np.abs(a[:, None] - a[None, :]).sum() / (2 * len(a) ** 2 * a.mean())
        assert gini(a) == pytest.approx(slow)
        assert coefficient_of_variation(a) == pytest.approx(np.std(a) / np.mean(a))
    assert gini(np.ones(5)) == pytest.approx(0.0)


def test_summary_and_bad_arguments() -> None:
    s = summarize(_curve())
    assert [x.k for x in s] == [10, 50, 80, 100]
    assert s[0].accuracy_std == pytest.approx(np.std([0.5, 0.6], ddof=1))
    with pytest.raises(InvalidConfigError, match="outside"):
        recommend(_curve(), CLASSES, 100, 1.0)
    with pytest.raises(InvalidConfigError, match="criterion"):
        recommend(_curve(), CLASSES, 100, 0.1, criterion="median")  # type: ignore[arg-type]
    with pytest.raises(InvalidConfigError, match="full-layer"):
        recommend(_curve()[:2], CLASSES, 100, 0.1)


def test_dr_is_one_minus_k_over_d_exactly_in_the_json() -> None:
    """Issue 18: `"dr": 0.19999999999999996` in JSON (1.0 − 0.8); (d − k)/d is the correctly rounded 0.2."""
    r = recommend(_curve(), CLASSES, 100, 0.05, "relative")
    assert r.k == 80 and r.dr == 0.2 and '"dr":0.2,' in r.model_dump_json()
    for d in (64, 100, 1280, 2048):
        for k in range(1, d):
            assert (d - k) / d == float(Fraction(d - k, d))  # the slow exact value
