"""The Gini coefficient, the one inequality rule shared by the probes (retrieval records each curve point's
Gini of per-query scores) and the advice (`advice.fairness`: Gini of per-class accuracy)."""

from __future__ import annotations

import numpy as np


def gini(values: np.ndarray) -> float:
    """Gini coefficient `Σ_i (2i − C − 1)·a_(i) / (C·Σ a)` over ascending-sorted values (i = 1..C); 0 for
    no values or a non-positive total."""
    a = np.sort(np.asarray(values, dtype=np.float64))
    c = a.shape[0]
    total = a.sum()
    if c == 0 or total <= 0:
        return 0.0
    i = np.arange(1, c + 1)
    return float(((2 * i - c - 1) * a).sum() / (c * total))
