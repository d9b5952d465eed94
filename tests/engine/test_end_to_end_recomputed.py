"""analyze() on real images (scikit-learn's digits through a random-weight resnet18 at 32 px), with
every probe accuracy, λ, selection score and CKA recomputed independently here with scikit-learn and
numpy from the cached features: standardisation by StandardScaler, GCV from an SVD in sample space,
the fit by sklearn's Ridge, CKA from n × n centred kernels."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import Ridge
from sklearn.preprocessing import StandardScaler

from redundancy import AnalysisConfig, Runtime, analyze
from redundancy.probing import sample_subset
from redundancy.probing.baselines import random_projection_matrix
from redundancy.probing.cka import independent_subset_pair
from redundancy.probing.ridge import GCV_ALPHAS
from redundancy.sources.extraction import Features

CONFIG = {
    "model": {"name": "resnet18", "weights": "random"},
    "dataset": {"spec": "digits", "max_train": 300, "max_test": 100},
    "image_size": 32,
    "fractions": [0.01, 0.25, 1.0],
    "seeds": 2,
    "deltas": [0.05, 0.2],
    "baselines": ["first_k", "random_projection"],
    "bootstrap": 100,
    "feature_dtype": "float32",  # the stored features are then exactly the rows the statistics came from
}


def gcv_by_svd(z: np.ndarray, onehot: np.ndarray, lambdas: np.ndarray) -> np.ndarray:
    """GCV(λ) of ridge with intercept, from the SVD of the centred design (sample space)."""
    n = z.shape[0]
    zc = z - z.mean(0)
    u, s, _ = np.linalg.svd(zc, full_matrices=False)
    keep = s > s.max(initial=0.0) * 1e-10
    u, s2 = u[:, keep], s[keep] ** 2
    yc = onehot - onehot.mean(0)
    uty = u.T @ yc
    out = []
    for lam in lambdas:
        shrink = s2 / (s2 + lam)
        resid = yc - u @ (shrink[:, None] * uty)
        out.append(n * (resid**2).sum() / (n - 1 - shrink.sum()) ** 2)
    return np.array(out)


def cka_slow(x: np.ndarray, y: np.ndarray) -> float:
    n = x.shape[0]
    h = np.eye(n) - 1.0 / n
    k, l = h @ x @ x.T @ h, h @ y @ y.T @ h
    den = np.sqrt((k * k).sum() * (l * l).sum())
    return float((k * l).sum() / den) if den > 1e-9 * max(1.0, float(np.abs(k).max())) else float("nan")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    tmp = tmp_path_factory.mktemp("e2e")
    cfg = AnalysisConfig.model_validate(CONFIG)
    report = analyze(cfg, Runtime(cache_dir=tmp / "cache", data_root=tmp))
    (path,) = [meta.parent for meta in (tmp / "cache").glob("*/meta.json")]  # one feature store
    return cfg, report, Features.load(path)


def _fit_and_score(x_all, y_all, x_test, y_test, c, lambdas, lam=None):
    scaler = StandardScaler().fit(x_all)
    z, zt = scaler.transform(x_all), scaler.transform(x_test)
    onehot = np.eye(c)[y_all]
    gcv = gcv_by_svd(z, onehot, lambdas)
    if lam is None:
        lam = lambdas[int(np.flatnonzero(gcv == gcv.min()).max())]
    ref = Ridge(alpha=lam).fit(z, onehot)
    acc = float((ref.predict(zt).argmax(1) == y_test).mean())
    return lam, float(gcv[int(np.argmin(np.abs(lambdas - lam)))]), acc


def test_every_number_recomputed_with_sklearn_and_numpy(run: tuple) -> None:
    cfg, report, f = run
    x_all = np.concatenate([f.x_train, f.x_val]).astype(np.float64)
    y_all = np.concatenate([f.y_train, f.y_val])
    c, d, n = f.stats.num_classes, f.d, len(y_all)
    lambdas = np.array(GCV_ALPHAS) * n
    assert n < d  # 300 rows, 512 neurons: the sample-space case is covered at the full layer
    random = [p for p in report.curve if p.kind == "random"]
    assert len(random) == 5
    for p in sorted(random, key=lambda p: (p.k, p.seed)):
        subset = sample_subset(d, p.k, p.seed, cfg.seed)
        # every seed at its own GCV optimum
        lam, gcv, acc = _fit_and_score(x_all[:, subset], y_all, f.x_test[:, subset], f.y_test, c, lambdas)
        assert p.lam == pytest.approx(lam, rel=1e-9)
        assert p.selection == "gcv" and p.selection_score == pytest.approx(gcv, rel=1e-6)
        assert p.accuracy == pytest.approx(acc, abs=1e-12)
        ref_cka = cka_slow(x_all[:, subset], x_all)  # CKA on the rows the probe was fitted on
        assert (p.cka is None) == np.isnan(ref_cka)
        if p.cka is not None:
            assert p.cka == pytest.approx(ref_cka, rel=1e-6)
        s, t = independent_subset_pair(d, p.k, p.seed, cfg.seed)
        pair = cka_slow(f.x_test[:, s].astype(np.float64), f.x_test[:, t].astype(np.float64))
        assert (p.cka_pair is None) == np.isnan(pair)
        if p.cka_pair is not None:
            assert p.cka_pair == pytest.approx(pair, rel=1e-6)
    full = next(p for p in random if p.k == d)
    assert report.full_accuracy == pytest.approx(full.accuracy)


def test_baselines_recomputed(run: tuple) -> None:
    cfg, report, f = run
    x_all = np.concatenate([f.x_train, f.x_val]).astype(np.float64)
    y_all = np.concatenate([f.y_train, f.y_val])
    c, d = f.stats.num_classes, f.d
    lambdas = np.array(GCV_ALPHAS) * len(y_all)
    points = [p for p in report.curve if p.kind in ("first_k", "random_projection")]
    assert {p.kind for p in points} == {"first_k", "random_projection"}
    for p in points:
        r = np.eye(d)[:, :p.k] if p.kind == "first_k" else random_projection_matrix(d, p.k, p.seed, cfg.seed)
        lam, gcv, acc = _fit_and_score(x_all @ r, y_all, f.x_test @ r, f.y_test, c, lambdas)
        assert p.lam == pytest.approx(lam, rel=1e-9), (p.kind, p.k)
        assert p.selection_score == pytest.approx(gcv, rel=1e-5)
        assert p.accuracy == pytest.approx(acc, abs=1e-12)
        ref_cka = cka_slow(x_all @ r, x_all)
        if p.cka is not None:
            assert p.cka == pytest.approx(ref_cka, rel=1e-6)
        else:
            assert np.isnan(ref_cka)


def test_summary_means_are_over_defined_values_and_fairness_is_per_seed(run: tuple) -> None:
    _, report, _ = run
    for s in report.summary:
        pts = [p for p in report.curve if p.kind == "random" and p.k == s.k]
        defined = [p.cka for p in pts if p.cka is not None]
        assert s.cka_count == len(defined)
        assert s.cka_mean == (pytest.approx(np.mean(defined)) if defined else None)
    for rec in report.recommendations:
        at = [p.per_class_accuracy for p in report.curve if p.kind == "random" and p.k == rec.k]
        from redundancy.advice.fairness import gini

        assert rec.fairness.gini_at == pytest.approx(np.mean([gini(np.array(v)) for v in at]))
        assert rec.ci_method is not None and "paired" in rec.ci_method
        assert rec.holds_ci_lower == (rec.margin_ci_low >= -1e-12)
