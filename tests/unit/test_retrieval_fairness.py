"""Retrieval's per-query fairness (issue 20, must-have 3): the worst decile of queries, full layer against a
subset, per seed then averaged, against a numpy brute force over the per-query scores."""

from __future__ import annotations

import math

import numpy as np
import pytest

from redundancy.advice.fairness import fairness_cost
from redundancy.advice.recommend import fairness_at
from redundancy.probing import draw_subset
from redundancy.probing.retrieval import DECILE_NAMES, RetrievalScorer, decile_means
from redundancy.report import CurvePoint


def brute_worst_decile(per_query: list[np.ndarray]) -> float:
    """Mean over seeds of the mean of each seed's lowest ⌈n/10⌉ per-query scores."""
    return float(np.mean([np.sort(s)[: math.ceil(len(s) / 10)].mean() for s in per_query]))


def test_worst_decile_is_the_mean_of_the_worst_tenth_of_queries_per_seed() -> None:
    rng = np.random.default_rng(5)
    full = [rng.uniform(0.3, 1.0, 57)]
    at = [np.clip(full[0] - rng.uniform(0, 0.4, 57), 0, 1) for _ in range(3)]
    f = fairness_cost(np.array([decile_means(s) for s in full]), np.array([decile_means(s) for s in at]),
                      list(DECILE_NAMES))
    assert f.worst_decile_full == pytest.approx(brute_worst_decile(full), abs=1e-12)
    assert f.worst_decile_at == pytest.approx(brute_worst_decile(at), abs=1e-12)
    assert f.worst_decile_change == pytest.approx(brute_worst_decile(at) - brute_worst_decile(full), abs=1e-12)
    assert f.worst_decile_change < 0


def test_classification_has_no_worst_decile() -> None:
    f = fairness_cost(np.array([[0.9, 0.8, 0.7]]), np.array([[0.8, 0.8, 0.6]]), ["a", "b", "c"])
    assert f.worst_decile_full is None and f.worst_decile_at is None and f.worst_decile_change is None


def test_worst_decile_of_a_scorers_subsets_equals_brute_force_over_its_per_query_scores() -> None:
    rng = np.random.default_rng(11)
    d = 16
    centres = rng.standard_normal((5, d))
    y_c, y_q = rng.integers(0, 5, 300), rng.integers(0, 5, 73)
    corpus = centres[y_c] + 1.5 * rng.standard_normal((300, d))
    queries = centres[y_q] + 1.5 * rng.standard_normal((73, d))
    scorer = RetrievalScorer(corpus, y_c, queries, y_q, "ndcg@10")
    k = 4
    full = scorer.subset(np.arange(d))
    subsets = [scorer.subset(draw_subset(d, k, seed)) for seed in range(3)]

    def point(res: object, kk: int, seed: int) -> CurvePoint:
        return CurvePoint(fraction=kk / d, k=kk, seed=seed, accuracy=res.accuracy,  # type: ignore[attr-defined]
                          per_class_accuracy=res.per_class_accuracy.tolist(), metric="ndcg@10")  # type: ignore[attr-defined]

    curve = [point(full, d, 0)] + [point(r, k, s) for s, r in enumerate(subsets)]
    f = fairness_at(curve, list(DECILE_NAMES), d, k)
    assert f.worst_decile_full == pytest.approx(brute_worst_decile([full.correct]), abs=1e-12)
    assert f.worst_decile_at == pytest.approx(brute_worst_decile([r.correct for r in subsets]), abs=1e-12)
    assert f.seeds_at == 3
