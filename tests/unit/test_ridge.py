"""The Gram-space ridge probe against the slow, obvious computations."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import Ridge

from redundancy.probes.ridge import RidgeProber
from redundancy.stats import GramStats


def _problem(n: int = 400, d: int = 40, c: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, size=n + 200)
    means = rng.normal(size=(c, d)) * 0.7
    x = means[y] + rng.normal(size=(n + 200, d)) * rng.uniform(0.5, 3.0, size=d) + rng.uniform(-2, 5, size=d)
    return x[:n], y[:n], x[n : n + 100], y[n : n + 100], x[n + 100 :], y[n + 100 :]


def _explicit(x, y, c):
    mu, sd = x.mean(0), x.std(0)
    z = (x - mu) / sd
    yc = np.eye(c)[y] - np.eye(c)[y].mean(0)
    return mu, sd, z, yc


@pytest.mark.parametrize("subset", [np.array([3]), np.array([0, 5, 7, 30]), np.arange(40)])
def test_weights_match_explicit_solve_and_sklearn(subset: np.ndarray) -> None:
    x, y, xv, yv, xt, yt = _problem()
    c, lam = 4, 37.5
    prober = RidgeProber(GramStats.from_features(x, y, c).standardised(), xv, yv, xt, yt)
    w_gram = prober.weights(subset, lam)

    mu, sd, z, yc = _explicit(x, y, c)
    zs = z[:, subset]
    w_explicit = np.linalg.solve(zs.T @ zs + lam * np.eye(len(subset)), zs.T @ yc)
    np.testing.assert_allclose(w_gram, w_explicit, rtol=1e-8, atol=1e-10)

    ref = Ridge(alpha=lam, fit_intercept=True, solver="cholesky").fit(zs, np.eye(c)[y])
    np.testing.assert_allclose(w_gram, ref.coef_.T, rtol=1e-6, atol=1e-8)
    # same predictions on test as scikit-learn's fitted model
    got = prober.probe(subset, lam=lam)
    pred = ref.predict((xt[:, subset] - mu[subset]) / sd[subset]).argmax(1)
    assert got.accuracy == pytest.approx(float((pred == yt).mean()))


def test_lambda_choice_matches_brute_force_over_the_grid() -> None:
    x, y, xv, yv, xt, yt = _problem(seed=3)
    c = 4
    prober = RidgeProber(GramStats.from_features(x, y, c).standardised(), xv, yv, xt, yt)
    subset = np.array([1, 2, 3, 10, 11, 20, 33])
    chosen = prober.probe(subset)

    mu, sd, z, _ = _explicit(x, y, c)
    zv = (xv - mu) / sd
    best, best_lam = -1.0, None
    for lam in prober.lambdas.tolist():
        ref = Ridge(alpha=lam, solver="cholesky").fit(z[:, subset], np.eye(c)[y])
        acc = float((ref.predict(zv[:, subset]).argmax(1) == yv).mean())
        if acc >= best:
            best, best_lam = acc, lam
    assert chosen.lam == pytest.approx(best_lam)


def test_per_class_accuracy_is_consistent_with_accuracy() -> None:
    x, y, xv, yv, xt, yt = _problem(seed=5)
    prober = RidgeProber(GramStats.from_features(x, y, 4).standardised(), xv, yv, xt, yt)
    r = prober.probe(np.arange(0, 40, 2))
    counts = np.bincount(yt, minlength=4)
    assert r.accuracy == pytest.approx(float((r.per_class_accuracy * counts).sum() / counts.sum()))
    assert r.accuracy > 0.5  # the class signal is real: far above chance (0.25)
