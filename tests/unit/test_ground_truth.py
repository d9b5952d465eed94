"""Ground truth on synthetic features: diffuse class signal → high DR; localised → low DR."""

from __future__ import annotations

import numpy as np

from redundancy.advice.recommend import recommend
from redundancy.config import AnalysisConfig
from redundancy.pipeline import run_probes
from redundancy.sources.extraction import Features
from redundancy.sources.stats import GramStats

C, D = 5, 256
FRACTIONS = [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 0.8, 0.9, 1.0]


def _features(x: np.ndarray, y: np.ndarray) -> Features:
    n = len(y)
    tr, va, te = slice(0, n * 6 // 10), slice(n * 6 // 10, n * 7 // 10), slice(n * 7 // 10, n)
    return Features(
        stats=GramStats.from_features(x[tr], y[tr], C), x_train=x[tr], y_train=y[tr],
        x_val=x[va], y_val=y[va], x_test=x[te], y_test=y[te], pooling="synthetic",
    )


def _dr(features: Features, delta: float) -> tuple[float, list]:
    cfg = AnalysisConfig(
        model={"name": "synthetic"}, dataset={"spec": "synthetic"}, fractions=FRACTIONS, seeds=5, baselines=[],
        bootstrap=0,
    )
    curve = run_probes(cfg, features).curve
    return recommend(curve, [str(c) for c in range(C)], D, delta, "relative").dr, curve


def diffuse(n: int = 4000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """An 8-dimensional class signal mixed randomly into all 256 neurons."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, C, size=n)
    latent = rng.normal(size=(C, 8))[y] * 1.5 + rng.normal(size=(n, 8))
    return latent @ rng.normal(size=(8, D)) + rng.normal(size=(n, D)) * 2.0, y


def localised(n: int = 4000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Class c > 0 is told apart from class 0 only by neuron `signal[c-1]`; 252 neurons are noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, C, size=n)
    x = rng.normal(size=(n, D))
    signal = rng.choice(D, size=C - 1, replace=False)
    for c in range(1, C):
        x[y == c, signal[c - 1]] += 4.0
    return x, y


def test_diffuse_signal_gives_high_diffused_redundancy() -> None:
    dr, curve = _dr(_features(*diffuse()), delta=0.05)
    assert dr >= 0.8, f"diffuse signal: DR {dr} (f* = {1 - dr}) should be ≥ 0.8"
    full = next(p.accuracy for p in curve if p.k == D)
    assert full > 0.8


def test_localised_signal_gives_low_diffused_redundancy() -> None:
    dr, curve = _dr(_features(*localised()), delta=0.05)
    assert dr <= 0.2, f"localised signal: DR {dr} should be ≤ 0.2"
    full = next(p.accuracy for p in curve if p.k == D)
    tiny = np.mean([p.accuracy for p in curve if p.fraction == 0.05])
    assert full > 0.9 and tiny < 0.5
