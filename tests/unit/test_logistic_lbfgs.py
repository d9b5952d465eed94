"""The L-BFGS logistic probe reaches its objective's optimum: against scikit-learn's
`LogisticRegression` at the same C on digits, and its validation split's rule."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

from redundancy.probing.lbfgs import C_GRID, MIN_VAL_PER_CLASS, selection_split, train_logistic_lbfgs


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    old = torch.get_num_threads()
    torch.set_num_threads(1)  # small matrices on a shared machine: one thread is the fast one
    yield
    torch.set_num_threads(old)


def _objective(z: np.ndarray, y: np.ndarray, w: np.ndarray, b: np.ndarray, c: float) -> float:
    """sklearn's multinomial objective `½‖W‖² + C·Σ CE`, divided by C·n (same minimiser)."""
    logits = z @ w + b
    logits = logits - logits.max(1, keepdims=True)
    ce = np.log(np.exp(logits).sum(1)) - logits[np.arange(len(y)), y]
    return float(ce.mean() + (w**2).sum() / (2 * c * len(y)))


def test_objective_and_predictions_equal_sklearn_at_the_same_c_on_digits() -> None:
    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(y))
    x, y = x[order].astype(np.float32), y[order]
    x_fit, y_fit, x_val, y_val, x_test, y_test = x[:1080], y[:1080], x[1080:1200], y[1080:1200], x[1200:], y[1200:]
    subsets = [np.arange(0, 64, 8), np.sort(np.random.default_rng(1).choice(64, 32, replace=False)), np.arange(64)]
    results = train_logistic_lbfgs(x_fit, y_fit, x_val, y_val, x_test, y_test, subsets, 10)
    x_all, y_all = np.concatenate([x_fit, x_val]).astype(np.float64), np.concatenate([y_fit, y_val])
    mean, sd = x_all.mean(0), x_all.std(0)
    sd[sd == 0] = 1.0
    z, z_test = (x_all - mean) / sd, (x_test - mean) / sd
    chosen = set()
    for s, r in zip(subsets, results, strict=True):
        c = 1.0 / r.lam
        assert min(abs(c - g) / g for g in C_GRID) < 1e-12
        chosen.add(c)
        ref = LogisticRegression(C=c, tol=1e-10, max_iter=100_000).fit(z[:, s], y_all)
        ours = _objective(z[:, s], y_all, r.coef, r.intercept, c)
        theirs = _objective(z[:, s], y_all, ref.coef_.T, ref.intercept_, c)
        assert abs(ours - theirs) <= 1e-4 * theirs, (len(s), c, ours, theirs)
        pred = (z_test[:, s] @ r.coef + r.intercept).argmax(1)
        assert (pred == ref.predict(z_test[:, s])).mean() >= 0.99
        assert r.accuracy == pytest.approx(float((pred == y_test).mean()))
    assert max(chosen) >= 0.1  # the comparison covers weakly regularised (harder) optima


def test_validation_split_keeps_the_configured_one_when_it_has_five_per_class() -> None:
    y_fit, y_val = np.repeat(np.arange(4), 30), np.repeat(np.arange(4), MIN_VAL_PER_CLASS)
    fit, val, how = selection_split(y_fit, y_val, seed=0)
    np.testing.assert_array_equal(val, 120 + np.arange(20))
    assert "configured" in how and len(fit) == 120


def test_validation_split_is_redrawn_with_five_per_class_else_half_of_a_small_class() -> None:
    y_fit = np.concatenate([np.repeat(np.arange(3), 9), [3] * 5, [4]])  # Flowers-like: 10 per class, 1 held out
    y_val = np.array([0, 1, 2, 3])
    fit, val, how = selection_split(y_fit, y_val, seed=0)
    pooled = np.concatenate([y_fit, y_val])
    held = np.bincount(pooled[val], minlength=5)
    np.testing.assert_array_equal(held, [5, 5, 5, 3, 0])  # 10 → 5; 6 → half (3); one image → none
    assert sorted(np.concatenate([fit, val]).tolist()) == list(range(len(pooled)))
    assert "half" in how
