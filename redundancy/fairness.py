"""Inequality of per-class accuracy, and how much it changes when neurons are dropped."""

from __future__ import annotations

import numpy as np

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


def fairness_cost(
    per_class_full: np.ndarray, per_class_at: np.ndarray, classes: list[str], top: int = 3
) -> Fairness:
    """Each metric at the full layer, at the chosen fraction, and the change; the classes that lose most."""
    full = np.asarray(per_class_full, dtype=np.float64)
    at = np.asarray(per_class_at, dtype=np.float64)
    g_full, g_at = gini(full), gini(at)
    cv_full, cv_at = coefficient_of_variation(full), coefficient_of_variation(at)
    loss = full - at
    order = [int(i) for i in np.argsort(-loss, kind="stable") if loss[i] > 0][:top]
    return Fairness(
        gini_full=g_full,
        gini_at=g_at,
        gini_change=g_at - g_full,
        cv_full=cv_full,
        cv_at=cv_at,
        cv_change=cv_at - cv_full,
        worst_class_full=float(full.min()),
        worst_class_at=float(at.min()),
        worst_class_change=float(at.min() - full.min()),
        range_full=float(full.max() - full.min()),
        range_at=float(at.max() - at.min()),
        range_change=float((at.max() - at.min()) - (full.max() - full.min())),
        most_hurt_classes=[
            ClassLoss(cls=classes[i], accuracy_full=float(full[i]), accuracy_at=float(at[i]),
                      change=float(-loss[i]))
            for i in order
        ],
    )
