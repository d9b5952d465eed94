"""Baselines from the Gram against explicit computations on the features."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler

from redundancy.probing.baselines import Baselines, projection_cka, random_projection_matrix
from redundancy.probing.cka import linear_cka
from redundancy.probing.ridge import DEFAULT_ALPHAS, RidgeProber
from redundancy.sources.stats import GramStats


def _problem(n: int = 300, d: int = 30, c: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    m = n + 200
    y = rng.integers(0, c, size=m)
    mix = rng.normal(size=(d, d)) / np.sqrt(d)  # correlated neurons: PCA differs from the neurons
    x = (rng.normal(size=(c, d))[y] * 0.8 + rng.normal(size=(m, d))) @ mix * rng.uniform(0.5, 3, size=d)
    x = x + rng.uniform(-2, 4, size=d)
    return x[:n], y[:n], x[n : n + 100], y[n : n + 100], x[n + 100 :], y[n + 100 :]


def _explicit_ridge(f, y, fv, yv, ft, yt, c):
    """Standardise, solve the ridge normal equations per λ, pick λ on validation, score on test."""
    mu, sd = f.mean(0), f.std(0)
    z, zv, zt = (f - mu) / sd, (fv - mu) / sd, (ft - mu) / sd
    onehot = np.eye(c)[y]
    prior = onehot.mean(0)
    yc = onehot - prior
    best, best_w = -1.0, None
    for alpha in DEFAULT_ALPHAS:
        w = np.linalg.solve(z.T @ z + alpha * len(y) * np.eye(z.shape[1]), z.T @ yc)
        acc = ((zv @ w + prior).argmax(1) == yv).mean()
        if acc >= best:
            best, best_w = acc, w
    return (zt @ best_w + prior).argmax(1)


def _explicit_ridge_unscaled(f, y, fv, yv, ft, yt, c):
    """Ridge on features already centred and in their own scale (no standardisation), λ on validation."""
    onehot = np.eye(c)[y]
    prior = onehot.mean(0)
    best, best_w = -1.0, None
    for alpha in DEFAULT_ALPHAS:
        w = np.linalg.solve(f.T @ f + alpha * len(y) * np.eye(f.shape[1]), f.T @ (onehot - prior))
        acc = ((fv @ w + prior).argmax(1) == yv).mean()
        if acc >= best:
            best, best_w = acc, w
    return (ft @ best_w + prior).argmax(1)


@pytest.mark.parametrize("k", [1, 3, 12])
def test_pca_matches_sklearn_pca_of_standardised_features_and_explicit_ridge(k: int) -> None:
    x, y, xv, yv, xt, yt = _problem()
    stats = GramStats.from_features(x, y, 4)
    res = Baselines(stats, xv, yv, xt, yt).pca(k)
    scaler = StandardScaler().fit(x)
    pca = PCA(n_components=k).fit(scaler.transform(x))

    def scores(a: np.ndarray) -> np.ndarray:
        return pca.transform(scaler.transform(a))

    pred = _explicit_ridge_unscaled(scores(x), y, scores(xv), yv, scores(xt), yt, 4)
    np.testing.assert_array_equal(res.correct, pred == yt)
    assert res.accuracy == pytest.approx((pred == yt).mean())
    assert res.kind == "pca" and res.k == k
    assert res.cka == pytest.approx(linear_cka(scores(x), x), rel=1e-8)


def test_pca_of_every_component_is_the_full_layer_probe() -> None:
    x, y, xv, yv, xt, yt = _problem()
    stats = GramStats.from_features(x, y, 4)
    full = RidgeProber(stats.standardised(), xv, yv, xt, yt).probe(np.arange(x.shape[1]))
    res = Baselines(stats, xv, yv, xt, yt).pca(x.shape[1])
    np.testing.assert_array_equal(res.correct, full.correct)
    assert res.lam == pytest.approx(full.lam)


def test_pca_caps_k_at_rank_when_n_is_below_d() -> None:
    x, y, xv, yv, xt, yt = _problem(n=20, d=30)
    b = Baselines(GramStats.from_features(x, y, 4), xv, yv, xt, yt)
    assert b.pca_rank() == 19  # n − 1 after centring
    assert b.pca(30).k == 19


@pytest.mark.parametrize("standardise", [False, True])
def test_random_projection_matches_explicit_projection(standardise: bool) -> None:
    x, y, xv, yv, xt, yt = _problem()
    stats = GramStats.from_features(x, y, 4)
    k, seed = 7, 2
    res = Baselines(stats, xv, yv, xt, yt).random_projection(k, seed, standardise=standardise)
    r = random_projection_matrix(30, k, seed)
    if standardise:
        r = r / x.std(0)[:, None]
    pred = _explicit_ridge(x @ r, y, xv @ r, yv, xt @ r, yt, 4)
    np.testing.assert_array_equal(res.correct, pred == yt)
    np.testing.assert_allclose(res.per_class_accuracy, [(pred == yt)[yt == c].mean() for c in range(4)])
    assert res.cka == pytest.approx(linear_cka(x @ r, x), rel=1e-8)
    assert res.kind == "random_projection" and res.k == k


def test_random_projection_is_seeded() -> None:
    a, b = random_projection_matrix(30, 5, 0), random_projection_matrix(30, 5, 0)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, random_projection_matrix(30, 5, 1))
    x, y, xv, yv, xt, yt = _problem()
    stats = GramStats.from_features(x, y, 4)
    r1 = Baselines(stats, xv, yv, xt, yt).random_projection(5, 0)
    r2 = Baselines(stats, xv, yv, xt, yt).random_projection(5, 0)
    assert r1.accuracy == r2.accuracy and r1.cka == r2.cka


def test_first_k_is_the_ridge_probe_on_the_leading_neurons() -> None:
    x, y, xv, yv, xt, yt = _problem()
    stats = GramStats.from_features(x, y, 4)
    res = Baselines(stats, xv, yv, xt, yt).first_k(6)
    ref = RidgeProber(stats.standardised(), xv, yv, xt, yt).probe(np.arange(6))
    assert res.accuracy == ref.accuracy and res.lam == ref.lam
    pred = _explicit_ridge(x[:, :6], y, xv[:, :6], yv, xt[:, :6], yt, 4)
    np.testing.assert_array_equal(res.correct, pred == yt)
    assert res.cka == pytest.approx(linear_cka(x[:, :6], x), rel=1e-8)


def test_projection_cka_of_identity_is_one_and_of_nothing_is_undefined() -> None:
    x = _problem()[0]
    g = GramStats.from_features(x, np.zeros(len(x), dtype=int), 1).centred_gram()
    assert projection_cka(g, np.eye(30)) == pytest.approx(1.0)
    assert np.isnan(projection_cka(g, np.zeros((30, 2))))  # no variance: undefined, not 0
