"""Inequality of per-class accuracy, and how much it changes when neurons are dropped.

Every metric is computed on each seed's own per-class accuracy vector and then averaged over seeds
(the mean of per-seed Ginis, not the Gini of the seed-mean vector: averaging the vectors first
smooths away each seed's own errors and can flip the sign of the change). The spread is the
standard deviation over seeds (ddof = 1; 0 for one seed).

For retrieval the vector is the mean score of each decile of queries, ascending
(`probing.retrieval.decile_means`), so its lowest entry is the mean score of the worst 10 % of queries:
`worst_decile_*` names it (None for classification). The Gini is exact: each curve point's Gini of its
per-query scores (`CurvePoint.query_gini`), per seed then averaged (`point_gini`, `fairness_of`), not the
Gini of the ten decile means (a lower bound of it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from redundancy.probing.inequality import gini
from redundancy.probing.retrieval import DECILE_NAMES
from redundancy.report import ClassLoss, CurvePoint, Fairness

__all__ = ["METRICS", "coefficient_of_variation", "fairness_cost", "fairness_of", "gini", "point_gini", "per_seed"]


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
    return _mean_spread([metric(v) for v in np.atleast_2d(vectors)])


def _mean_spread(per_seed_values: Sequence[float]) -> tuple[float, float]:
    values = np.asarray(per_seed_values, dtype=np.float64)
    return float(values.mean()), float(values.std(ddof=1)) if values.size > 1 else 0.0


def point_gini(p: CurvePoint) -> float:
    """A curve point's Gini: of its per-query scores (retrieval, `query_gini`), else of its per-class accuracy
    (classification; also a retrieval curve stored before `query_gini` existed: the decile means' Gini)."""
    return p.query_gini if p.query_gini is not None else gini(np.asarray(p.per_class_accuracy))


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


def fairness_of(full: Sequence[CurvePoint], at: Sequence[CurvePoint], classes: list[str], top: int = 3) -> Fairness:
    """`fairness_cost` of the full layer's points (one per seed) against the points at one k, with the Gini
    per point by `point_gini`: for retrieval the exact Gini of per-query scores. The one place every answer
    (recommendation, methods, limits, budgets, multi-dataset) gets its fairness from points."""
    f = fairness_cost(np.array([p.per_class_accuracy for p in full]), np.array([p.per_class_accuracy for p in at]),
                      classes, top)
    g_full, g_full_std = _mean_spread([point_gini(p) for p in full])
    g_at, g_at_std = _mean_spread([point_gini(p) for p in at])
    return f.model_copy(update={"gini_full": g_full, "gini_at": g_at, "gini_change": g_at - g_full,
                                "gini_full_std": g_full_std, "gini_at_std": g_at_std})
