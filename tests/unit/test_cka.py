from __future__ import annotations

import numpy as np
import pytest

from redundancy.cka import GramCKA, linear_cka
from redundancy.stats import GramStats


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
