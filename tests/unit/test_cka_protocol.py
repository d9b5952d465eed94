"""`cka_protocol`: the paper's subset-versus-subset CKA (biased, last batch of 100 test images)
against a slow numpy computation, and the field reaching the config, the CLI and the API schema."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from redundancy.config import AnalysisConfig
from redundancy.pipeline import run_probes
from redundancy.probing.cka import independent_subset_pair
from redundancy.sources.extraction import Features
from redundancy.sources.stats import GramStats

C, D = 3, 40


def _slow_biased_cka(x: np.ndarray, y: np.ndarray) -> float:
    """HSIC(K, L) / √(HSIC(K, K)·HSIC(L, L)) with K = XXᵀ, L = YYᵀ and the centring matrix H."""
    n = x.shape[0]
    h = np.eye(n) - np.ones((n, n)) / n
    k, l = h @ (x @ x.T) @ h, h @ (y @ y.T) @ h
    return float(np.trace(k @ l) / np.sqrt(np.trace(k @ k) * np.trace(l @ l)))


def _features(n_test: int = 250) -> Features:
    rng = np.random.default_rng(3)
    n = 300 + n_test
    y = rng.integers(0, C, n)
    x = rng.normal(size=(C, 6))[y] @ rng.normal(size=(6, D)) + rng.normal(size=(n, D)) + 0.3 * np.arange(n)[:, None] / n
    x = np.maximum(x, 0.0)  # a drift along the row order: the last batch differs from the whole set
    return Features(GramStats.from_features(x[:250], y[:250], C), x[:250], y[:250], x[250:300], y[250:300],
                    x[300:], y[300:], "synthetic")


def _config(**over: object) -> AnalysisConfig:
    return AnalysisConfig(model={"name": "synthetic"}, dataset={"spec": "synthetic"}, fractions=[0.1, 0.5, 1.0],
                          seeds=3, baselines=[], bootstrap=0, **over)


def test_paper_protocol_is_the_biased_cka_of_the_last_100_test_images() -> None:
    f = _features()
    paper = run_probes(_config(cka_protocol="paper"), f).curve
    standard = run_probes(_config(), f).curve
    last = np.asarray(f.x_test[-100:], dtype=np.float64)
    for p, q in zip(paper, standard, strict=True):
        s, t = independent_subset_pair(D, p.k, p.seed, 0)
        assert p.cka_pair == pytest.approx(_slow_biased_cka(last[:, s], last[:, t]), rel=1e-9)
        everything = np.asarray(f.x_test, dtype=np.float64)
        assert q.cka_pair == pytest.approx(_slow_biased_cka(everything[:, s], everything[:, t]), rel=1e-9)
        assert p.cka == q.cka and p.accuracy == q.accuracy  # part-vs-whole and the probes are untouched
    assert any(abs(p.cka_pair - q.cka_pair) > 1e-3 for p, q in zip(paper, standard, strict=True) if p.k < D)


def test_fewer_than_100_test_images_are_all_used() -> None:
    f = _features(n_test=60)
    x = np.asarray(f.x_test, dtype=np.float64)
    p = next(p for p in run_probes(_config(cka_protocol="paper"), f).curve if p.k == 4)
    s, t = independent_subset_pair(D, 4, p.seed, 0)
    assert p.cka_pair == pytest.approx(_slow_biased_cka(x[:, s], x[:, t]), rel=1e-9)


def test_the_paper_protocol_refuses_the_debiased_estimator_naming_the_field() -> None:
    with pytest.raises(ValidationError) as exc:
        _config(cka="debiased", cka_protocol="paper")
    assert exc.value.errors()[0]["loc"] == ("cka_protocol",)
    with pytest.raises(ValidationError):
        _config(cka_protocol="notebook")


def test_the_field_reaches_the_cli_and_the_api_schema() -> None:
    from redundancy.cli.options import config_options
    from service.api.schemas import JobCreate

    flags = {o.flag: o for o in config_options()}
    assert flags["--cka-protocol"].choices == ("standard", "paper")
    assert flags["--cka-protocol"].default == "standard"
    prop = JobCreate.model_json_schema()["properties"]["cka_protocol"]
    assert prop["default"] == "standard" and set(prop["enum"]) == {"standard", "paper"}
