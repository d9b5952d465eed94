"""Inequality of per-class accuracy, and how much it changes when neurons are dropped.

Every metric is computed on each seed's own per-class accuracy vector and then averaged over seeds
(the mean of per-seed Ginis, not the Gini of the seed-mean vector: averaging the vectors first
smooths away each seed's own errors and can flip the sign of the change). The spread is the
standard deviation over seeds (ddof = 1; 0 for one seed).

For retrieval the vector is the mean score of each decile of queries, ascending
(`probing.retrieval.decile_means`), so its lowest entry is the mean score of the worst 10 % of queries:
`worst_decile_*` names it (None for classification).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from redundancy.probing.retrieval import DECILE_NAMES
from redundancy.report import ClassLoss, Fairness


def gini(values: np.ndarray) -> float:
    """Gini coefficient `Σ_i (2i − C − 1)·a_(i) / (C·Σ a)` over ascending-sorted values (i = 1..C)."""
    a = np.sort(np.asarray(values, dtype=np.float64))
    c = a.shape[0]
    total = a.sum()
    if c == 0 or total <= 0:
        return 0.0
    i = np.arange(1, c + 1)
    return float(((2 * i - c - 1) * a).sum() / (c * total))


def coefficient_of_variation(values: np.ndarray) -> float:
    a = np.asarray(values, dtype=np.float64)
    mean = a.mean()
    return float(a.std() / mean) if mean > 0 else 0.0


def worst_class(values: np.ndarray) -> float:
    return float(np.min(values))


def accuracy_range(values: np.ndarray) -> float:
    return float(np.max(values) - np.min(values))


METRICS: dict[str, Callable[[np.ndarray], float]] = {
    "gini": gini, "cv": coefficient_of_variation, "worst_class": worst_class, "range": accuracy_range,
}


def per_seed(metric: Callable[[np.ndarray], float], vectors: np.ndarray) -> tuple[float, float]:
    """Mean and spread (std over seeds, ddof = 1) of a metric applied to each seed's vector."""
    values = np.array([metric(v) for v in np.atleast_2d(vectors)])
    return float(values.mean()), float(values.std(ddof=1)) if values.size > 1 else 0.0


def fairness_cost(
    per_class_full: np.ndarray, per_class_at: np.ndarray, classes: list[str], top: int = 3
) -> Fairness:
    """Each metric per seed at the full layer and at the chosen fraction, averaged over seeds, with its
    spread and the change; the classes whose per-seed mean change is most negative.

    Parameters
    ----------
    per_class_full, per_class_at
        Per-class accuracy, `(C,)` for one seed or `(seeds, C)`.
    """
    full = np.atleast_2d(np.asarray(per_class_full, dtype=np.float64))
    at = np.atleast_2d(np.asarray(per_class_at, dtype=np.float64))
    fields: dict[str, float] = {}
    for name, metric in METRICS.items():
        f_mean, f_std = per_seed(metric, full)
        a_mean, a_std = per_seed(metric, at)
        fields |= {f"{name}_full": f_mean, f"{name}_at": a_mean, f"{name}_change": a_mean - f_mean,
                   f"{name}_full_std": f_std, f"{name}_at_std": a_std}
    if list(classes) == list(DECILE_NAMES):  # retrieval: the vector is the query deciles' mean scores
        fields |= {"worst_decile_full": fields["worst_class_full"], "worst_decile_at": fields["worst_class_at"],
                   "worst_decile_change": fields["worst_class_change"]}
    full_mean = full.mean(0)
    change = (at - full_mean).mean(0)  # per-seed mean of each class's change against the full layer
    order = [int(i) for i in np.argsort(change, kind="stable") if change[i] < -1e-12][:top]
    return Fairness(
        **fields,
        seeds_full=full.shape[0],
        seeds_at=at.shape[0],
        most_hurt_classes=[
            ClassLoss(cls=classes[i], accuracy_full=float(full_mean[i]), accuracy_at=float(at[:, i].mean()),
                      change=float(change[i]))
            for i in order
        ],
    )
