"""The Gram-space ridge probe against the slow, obvious computations."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import Ridge

from redundancy.probing.ridge import RidgeProber
from redundancy.sources.stats import GramStats


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


# λ by generalised cross-validation ------------------------------------------------------------------

from redundancy.probing.ridge import GCV_ALPHAS, gcv_curve, gcv_slow, pick_lambda  # noqa: E402
from redundancy.sources.stats import standardised_from_rows  # noqa: E402


def _gcv_sample_space(x: np.ndarray, y: np.ndarray, c: int, lambdas: np.ndarray) -> np.ndarray:
    """GCV from the SVD of the standardised, centred rows: nothing but the n × n hat matrix's spectrum."""
    z = (x - x.mean(0)) / x.std(0)
    u, s, _ = np.linalg.svd(z, full_matrices=False)
    keep = s > s.max() * 1e-10
    u, s2 = u[:, keep], s[keep] ** 2
    yc = np.eye(c)[y] - np.eye(c)[y].mean(0)
    n = len(y)
    out = []
    for lam in lambdas:
        shrink = s2 / (s2 + lam)
        resid = yc - u @ (shrink[:, None] * (u.T @ yc))
        out.append(n * (resid**2).sum() / (n - 1 - shrink.sum()) ** 2)
    return np.array(out)


def test_gcv_grid_is_dense_half_decades() -> None:
    a = np.log10(GCV_ALPHAS)
    assert len(a) >= 25 and np.allclose(np.diff(a), 0.5)


@pytest.mark.parametrize(("n", "d"), [(400, 40), (120, 40), (60, 200)])
def test_gcv_closed_form_equals_the_hat_matrix(n: int, d: int) -> None:
    x, y, _, _, xt, yt = _problem(n=n, d=d, seed=7)
    c = 4
    prober = RidgeProber(standardised_from_rows(x, y, c), None, None, xt, yt, select="gcv")
    subset = np.arange(d) if d > n else np.array([0, 3, 5, 9, 17, 21, 39])
    got = prober.probe(subset)
    z = (x[:, subset] - x[:, subset].mean(0)) / x[:, subset].std(0)
    slow = np.array([gcv_slow(z, np.eye(c)[y], lam) for lam in prober.lambdas.tolist()])
    best = int(np.flatnonzero(slow == slow.min()).max())
    assert got.lam == pytest.approx(prober.lambdas[best].item())
    assert got.score == pytest.approx(slow[best], rel=1e-8)
    # …and the fit at that λ is scikit-learn's ridge with intercept, n < d included
    ref = Ridge(alpha=got.lam).fit(z, np.eye(c)[y])
    zt = (xt[:, subset] - x[:, subset].mean(0)) / x[:, subset].std(0)
    assert got.accuracy == pytest.approx(float((ref.predict(zt).argmax(1) == yt).mean()))


def test_ridge_with_fewer_rows_than_neurons_matches_sklearn() -> None:
    x, y, _, _, xt, yt = _problem(n=50, d=120, seed=11)
    c, lam = 4, 3.0
    prober = RidgeProber(standardised_from_rows(x, y, c), None, None, xt, yt, select="gcv")
    mu, sd = x.mean(0), x.std(0)
    ref = Ridge(alpha=lam).fit((x - mu) / sd, np.eye(c)[y])
    np.testing.assert_allclose(prober.weights(np.arange(120), lam), ref.coef_.T, rtol=1e-6, atol=1e-9)
    got = prober.probe(np.arange(120), lam=lam)
    assert got.accuracy == pytest.approx(float((ref.predict((xt - mu) / sd).argmax(1) == yt).mean()))


def test_gcv_with_fewer_rows_than_neurons_on_real_shaped_features() -> None:
    """Flowers-102's shape (n < d, many classes, features far from zero): the Gram from streamed raw sums
    has a noisy, partly negative null space. The probe must still pick the sample-space GCV's λ."""
    rng = np.random.default_rng(0)
    n, d, c = 204, 320, 34
    y = np.arange(n) % c
    latent = rng.normal(size=(c, 24))[y] + 0.8 * rng.normal(size=(n, 24))
    x = np.abs(latent @ rng.normal(size=(24, d)) + 0.3 * rng.normal(size=(n, d))) * 0.05 + 40.0  # post-ReLU-like
    stats = GramStats.from_features(x, y, c)
    p = stats.standardised()
    evals = np.linalg.eigvalsh(p.gram)
    assert (evals < 0).sum() > 10  # the case: rounding made part of the null space negative
    xt = x[:40] + 0.001
    prober = RidgeProber(p, None, None, xt, y[:40], select="gcv")
    got = prober.probe(np.arange(d))
    slow = _gcv_sample_space(x, y, c, prober.lambdas.cpu().numpy())
    assert got.lam == pytest.approx(prober.lambdas[int(np.argmin(slow))].item())
    assert got.score == pytest.approx(slow.min(), rel=1e-4)
    # the naive feature-space formula (no clipping, no rank) breaks at the smallest λ: tr H exceeds n
    lam = prober.lambdas[0].item()
    e, v = np.linalg.eigh(p.gram)
    inv = 1.0 / (e + lam)
    naive_rss = prober.y_sq - (((v.T @ p.targets) ** 2).sum(1) * (2 * inv - e * inv * inv)).sum()
    naive_dof = n - 1 - (e * inv).sum()
    assert naive_dof < 0.5 or naive_rss < 0
    assert np.isfinite(got.score) and got.lam > lam


def test_group_chooses_each_subsets_own_lambda_as_the_hat_matrix_does() -> None:
    """λ per seed: each subset of a group at the minimum of its own GCV curve, computed the slow way
    (the explicit n × n hat matrix at every λ of the grid), with its own GCV score there."""
    x, y, _, _, xt, yt = _problem(n=120, d=40, seed=2)
    c = 4
    prober = RidgeProber(standardised_from_rows(x, y, c), None, None, xt, yt, select="gcv")
    rng = np.random.default_rng(1)
    subsets = [np.sort(rng.choice(40, 12, replace=False)) for _ in range(6)]
    group = prober.probe_group(subsets)
    lambdas = prober.lambdas.cpu().numpy()
    for s, r in zip(subsets, group, strict=True):
        z = (x[:, s] - x[:, s].mean(0)) / x[:, s].std(0)
        slow = np.array([gcv_slow(z, np.eye(c)[y], lam) for lam in lambdas])
        assert r.lam == pytest.approx(lambdas[int(np.argmin(slow))])
        assert r.score == pytest.approx(slow.min(), rel=1e-8)
        alone = prober.probe(s)
        assert (r.lam, r.accuracy) == (alone.lam, alone.accuracy)
    assert len({r.lam for r in group}) > 1  # the case: the seeds' own optima differ


def test_pick_lambda_ties_go_to_the_larger_and_edges_are_flagged() -> None:
    assert pick_lambda(np.array([3.0, 1.0, 1.0, 2.0])) == (2, False)
    assert pick_lambda(np.array([1.0, 2.0, 3.0])) == (0, True)
    assert pick_lambda(np.array([3.0, 2.0, 1.0])) == (2, True)
    assert pick_lambda(np.array([1.0, 1.0 + 1e-9, 3.0])) == (0, False)  # flat: not a real edge
    assert gcv_curve(np.array([1.0, 2.0]), np.array([5.0, 5.0]), 1.0, 3, np.array([1e-3]))[0] == np.inf


def test_bad_selection_is_refused() -> None:
    x, y, _, _, xt, yt = _problem()
    with pytest.raises(ValueError, match="select"):
        RidgeProber(standardised_from_rows(x, y, 4), None, None, xt, yt, select="loo")
    with pytest.raises(ValueError, match="x_val"):
        RidgeProber(standardised_from_rows(x, y, 4), None, None, xt, yt, select="val")


def test_tridiagonal_gcv_equals_the_spectrum_and_the_direct_solve() -> None:
    from redundancy.probing.ridge import GCV_ALPHAS, Tridiagonal, gcv_curve, gcv_tridiagonal

    x, y, *_ = _problem(n=500, d=60, seed=4)
    c = 4
    p = standardised_from_rows(x, y, c)
    y_sq = float(p.n * (1.0 - (p.prior**2).sum()))
    lambdas = np.array(GCV_ALPHAS) * p.n
    s = np.array([0, 3, 5, 8, 13, 21, 34, 40, 41, 59])
    g, b = p.gram[np.ix_(s, s)], p.targets[s]
    tri = Tridiagonal.of(g)
    t = np.diag(tri.d) + np.diag(tri.e, -1) + np.diag(tri.e, 1)
    np.testing.assert_allclose(tri.q(t @ tri.qt(np.eye(len(s)))), g, atol=1e-9 * p.n)  # G = Q T Qᵀ
    got = gcv_tridiagonal(g, b, y_sq, p.n, lambdas)
    assert got is not None
    curve, w = got
    e, v = np.linalg.eigh(g)
    np.testing.assert_allclose(curve, gcv_curve(e, ((v.T @ b) ** 2).sum(1), y_sq, p.n, lambdas), rtol=1e-9)
    lam = lambdas[int(np.argmin(curve))]
    np.testing.assert_allclose(w, np.linalg.solve(g + lam * np.eye(len(s)), b), rtol=1e-8, atol=1e-14)
    z = (x[:, s] - x[:, s].mean(0)) / x[:, s].std(0)
    assert curve.min() == pytest.approx(gcv_slow(z, np.eye(c)[y], lam), rel=1e-8)
    assert gcv_tridiagonal(g, b, y_sq, len(s), lambdas) is None  # n − 1 < k: the eigendecomposition path


def test_blocked_reflectors_rebuild_the_matrix() -> None:
    from redundancy.probing.ridge import REFLECTOR_BLOCK, Tridiagonal

    rng = np.random.default_rng(6)
    k = 2 * REFLECTOR_BLOCK + 23  # three blocks, the last one partial
    a = rng.normal(size=(3 * k, k))
    g = a.T @ a
    tri = Tridiagonal.of(g)
    t = np.diag(tri.d) + np.diag(tri.e, -1) + np.diag(tri.e, 1)
    q = tri.q(np.eye(k))
    np.testing.assert_allclose(q.T @ q, np.eye(k), atol=1e-12)
    np.testing.assert_allclose(q @ t @ q.T, g, atol=1e-10 * np.abs(g).max())
    np.testing.assert_allclose(tri.qt(np.eye(k)), q.T, atol=1e-13)


def test_prober_cpu_fast_path_equals_the_eigendecomposition_path() -> None:
    import redundancy.probing.ridge as ridge

    x, y, _, _, xt, yt = _problem(n=400, d=40, seed=5)
    fast = RidgeProber(standardised_from_rows(x, y, 4), None, None, xt, yt, select="gcv")
    slow = RidgeProber(standardised_from_rows(x, y, 4), None, None, xt, yt, select="gcv")
    slow.lapack = False  # the device-agnostic torch path (eigh, Cholesky)
    old, ridge.TRIDIAGONAL_MIN_K = ridge.TRIDIAGONAL_MIN_K, 2
    try:
        subsets = [np.arange(0, 40, 2), np.arange(1, 40, 2), np.arange(20)]
        for a, b in zip(fast.probe_group(subsets), slow.probe_group(subsets), strict=True):
            assert a.lam == b.lam and a.lam_at_edge == b.lam_at_edge
            assert a.score == pytest.approx(b.score, rel=1e-9)
            assert a.accuracy == b.accuracy
            np.testing.assert_array_equal(a.correct, b.correct)
    finally:
        ridge.TRIDIAGONAL_MIN_K = old


def test_group_predictions_by_one_product_equal_the_per_subset_gather() -> None:
    import torch

    x, y, _, _, xt, yt = _problem(n=300, d=40, seed=7)
    p = standardised_from_rows(x, y, 4)
    prober = RidgeProber(p, None, None, xt, yt, select="gcv")
    rng = np.random.default_rng(0)
    for sizes in ([3, 3], [15, 15, 15]):  # below and above half the layer together
        idxs = [torch.as_tensor(rng.choice(40, k, replace=False)) for k in sizes]
        ws = [torch.as_tensor(rng.normal(size=(k, 4))) for k in sizes]
        zt = (xt - p.mean) / p.std
        for got, i, w in zip(prober._predict(idxs, ws), idxs, ws, strict=True):
            np.testing.assert_array_equal(got, (zt[:, i.numpy()] @ w.numpy() + p.prior).argmax(1))


# ---- the eigendecomposition of a Gram with constant neurons ----------------------------------------

def _gram_with_constant_neurons(k: int = 60, live: int = 12, n: int = 30, seed: int = 0) -> np.ndarray:
    """A standardised Gram whose constant neurons are all-zero rows and columns, as the engine makes."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, live))
    x = (x - x.mean(0)) / x.std(0)
    g = np.zeros((k, k))
    idx = np.sort(rng.choice(k, live, replace=False))
    g[np.ix_(idx, idx)] = x.T @ x
    return g


def test_psd_eigh_splits_off_constant_neurons_exactly() -> None:
    import torch

    from redundancy.probing.ridge import psd_eigh

    g = _gram_with_constant_neurons()
    e, v = psd_eigh(torch.from_numpy(g))
    e, v = e.numpy(), v.numpy()
    assert np.all(np.diff(e) >= 0), "ascending, as torch.linalg.eigh"
    np.testing.assert_allclose(e, np.linalg.eigvalsh(g), atol=1e-9)  # the slow, obvious spectrum
    np.testing.assert_allclose(v @ np.diag(e) @ v.T, g, atol=1e-9)
    np.testing.assert_allclose(v.T @ v, np.eye(len(g)), atol=1e-12)
    full = np.ones((5, 5)) + 5 * np.eye(5)  # nothing constant: torch's own answer
    e2, _ = psd_eigh(torch.from_numpy(full))
    np.testing.assert_allclose(e2.numpy(), np.linalg.eigvalsh(full), rtol=1e-12)


def test_psd_eigh_falls_back_when_lapack_does_not_converge(monkeypatch: pytest.MonkeyPatch) -> None:
    """MKL's syevd can fail to converge (seen on a real 1,280-neuron Gram); the QR driver answers."""
    import torch

    from redundancy.probing import ridge

    def fails(_g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise torch.linalg.LinAlgError("linalg.eigh: The algorithm failed to converge")

    monkeypatch.setattr(torch.linalg, "eigh", fails)
    g = _gram_with_constant_neurons(seed=1)
    e, v = ridge.psd_eigh(torch.from_numpy(g))
    np.testing.assert_allclose(e.numpy(), np.linalg.eigvalsh(g), atol=1e-9)
    np.testing.assert_allclose(v.numpy() @ np.diag(e.numpy()) @ v.numpy().T, g, atol=1e-9)
