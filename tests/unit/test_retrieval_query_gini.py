"""Retrieval's Gini is exact (issue 20, must-have 3: "the Gini of per-query scores"): each curve point's
`query_gini` against a brute-force numpy nDCG@10 and Gini, the recommendation's `gini_*` from it per seed,
and every answer that reads fairness (methods, fairness limits, the multi-dataset answer) reading the same."""

from __future__ import annotations

import math

import numpy as np
import pytest

from redundancy.advice.fairness import gini
from redundancy.advice.recommend import recommend
from redundancy.deploy import TaskCurve, recommend_multitask
from redundancy.probing import draw_subset
from redundancy.probing.retrieval import DECILE_NAMES, RetrievalScorer, decile_means
from redundancy.probing.ridge import ProbeResult
from redundancy.report import CurvePoint
from redundancy.verdict import FairnessLimits, constrained, side_by_side

D, K, SEEDS = 16, 4, 3


def brute_ndcg10(queries: np.ndarray, corpus: np.ndarray, y_q: np.ndarray, y_c: np.ndarray) -> np.ndarray:
    """Per-query nDCG@10 (binary gains, cosine, ties to the lower corpus row) by loops over the definition;
    queries without a relevant corpus item are left out."""
    q = queries.astype(np.float64) / np.linalg.norm(queries.astype(np.float64), axis=1, keepdims=True)
    c = corpus.astype(np.float64) / np.linalg.norm(corpus.astype(np.float64), axis=1, keepdims=True)
    out = []
    for i in range(len(q)):
        n_rel = int((y_c == y_q[i]).sum())
        if n_rel == 0:
            continue
        order = np.lexsort((np.arange(len(c)), -(q[i] @ c.T)))[:10]
        dcg = sum(1.0 / math.log2(r + 2) for r, j in enumerate(order) if y_c[j] == y_q[i])
        out.append(dcg / sum(1.0 / math.log2(r + 2) for r in range(min(10, n_rel))))
    return np.array(out)


def brute_gini(s: np.ndarray) -> float:
    """Mean absolute difference over all ordered pairs, over twice the mean."""
    return float(np.abs(s[:, None] - s[None, :]).mean() / (2 * s.mean()))


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(2020)
    centres = rng.standard_normal((6, D))
    y_c, y_q = rng.integers(0, 6, 240), rng.integers(0, 7, 83)  # label 6: queries with no relevant item
    corpus = (centres[y_c] + 1.4 * rng.standard_normal((240, D))).astype(np.float32)
    queries = (centres[y_q % 6] + 1.4 * rng.standard_normal((83, D))).astype(np.float32)
    return corpus, y_c, queries, y_q


def _point(r: ProbeResult, k: int, seed: int, kind: str = "random") -> CurvePoint:
    """A curve point as the engine writes it (`engine.probe_random` / `search_baselines`)."""
    return CurvePoint(fraction=k / D, k=k, seed=seed, accuracy=r.accuracy,
                      per_class_accuracy=r.per_class_accuracy.tolist(), metric="ndcg@10", kind=kind,
                      query_gini=r.query_gini)


def test_query_gini_equals_brute_force_gini_of_brute_force_ndcg(data) -> None:
    corpus, y_c, queries, y_q = data
    scorer = RetrievalScorer(corpus, y_c, queries, y_q, "ndcg@10")
    for cols in [np.arange(D)] + [draw_subset(D, K, seed) for seed in range(SEEDS)]:
        brute = brute_ndcg10(queries[:, cols], corpus[:, cols], y_q, y_c)
        got = scorer.subset(cols)
        assert len(brute) < len(y_q)  # some queries have no relevant item and are left out
        np.testing.assert_allclose(got.correct, brute, rtol=0, atol=1e-12)
        assert got.query_gini == pytest.approx(brute_gini(brute), abs=1e-12)
        assert gini(brute) == pytest.approx(brute_gini(brute), abs=1e-12)  # the sorted formula is the same rule


def test_recommendation_gini_is_the_seed_mean_of_per_query_ginis_not_of_decile_means(data) -> None:
    corpus, y_c, queries, y_q = data
    scorer = RetrievalScorer(corpus, y_c, queries, y_q, "ndcg@10")
    subsets = [draw_subset(D, K, seed) for seed in range(SEEDS)]
    curve = [_point(scorer.subset(np.arange(D)), D, 0)]
    curve += [_point(scorer.subset(s), K, i) for i, s in enumerate(subsets)]
    rec = recommend(curve, list(DECILE_NAMES), D, 0.9)
    assert rec.k == K and rec.fairness.seeds_at == SEEDS
    per_seed = [brute_gini(brute_ndcg10(queries[:, s], corpus[:, s], y_q, y_c)) for s in subsets]
    full = brute_gini(brute_ndcg10(queries, corpus, y_q, y_c))
    f = rec.fairness
    assert f.gini_at == pytest.approx(np.mean(per_seed), abs=1e-12)
    assert f.gini_full == pytest.approx(full, abs=1e-12)
    assert f.gini_change == pytest.approx(np.mean(per_seed) - full, abs=1e-12)
    assert f.gini_at_std == pytest.approx(np.std(per_seed, ddof=1), abs=1e-12) and f.gini_full_std == 0.0
    # the old reading, the Gini of the ten decile means, is another (smaller) number on the same scores
    deciles = np.mean([gini(decile_means(brute_ndcg10(queries[:, s], corpus[:, s], y_q, y_c))) for s in subsets])
    assert abs(f.gini_at - deciles) > 1e-3
    # the worst decile still reads the decile vector
    assert f.worst_decile_at == pytest.approx(np.mean([p.per_class_accuracy[0] for p in curve[1:]]), abs=1e-12)


def _synthetic(query_gini: dict[tuple[str, int], float]) -> list[CurvePoint]:
    """Every point's decile vector equals the full layer's (its decile Gini change is 0); only `query_gini`
    (given per (kind, k), + 0.01·seed) tells the points apart."""
    vec = list(np.linspace(0.2, 0.9, 10))
    return [CurvePoint(fraction=k / 8, k=k, seed=seed, accuracy=0.8, per_class_accuracy=vec, metric="ndcg@10",
                       kind=kind, query_gini=g + 0.01 * seed)
            for (kind, k), g in query_gini.items() for seed in range(1 if k == 8 or kind != "random" else 2)]


GINIS = {("random", 8): 0.30, ("random", 2): 0.50, ("random", 4): 0.32, ("first_k", 2): 0.40, ("pca", 4): 0.20}


def test_methods_limits_and_the_multi_dataset_answer_read_the_per_query_gini() -> None:
    curve = _synthetic(GINIS)
    groups = list(DECILE_NAMES)
    seed_mean = {key: g + 0.005 if key[0] == "random" and key[1] < 8 else g for key, g in GINIS.items()}
    by_method = {m.method: m for m in side_by_side(curve, groups, 8, 0.7, "mean")}
    assert by_method["random_subset"].k == 2 and by_method["first_k"].k == 2 and by_method["pca"].k == 4
    for method, kind in [("random_subset", "random"), ("first_k", "first_k"), ("pca", "pca")]:
        m = by_method[method]
        assert m.fairness.gini_at == pytest.approx(seed_mean[(kind, m.k)], abs=1e-12), method
        assert m.fairness.gini_change == pytest.approx(seed_mean[(kind, m.k)] - 0.30, abs=1e-12), method
    # a Gini limit of +0.05: k = 2 (+0.205) is out, k = 4 (+0.025) in; the decile vectors alone would allow 2
    limited = constrained(curve, groups, 8, 0.7, "mean", FairnessLimits(max_gini_increase=0.05))
    assert limited.met and limited.k == 4 and limited.fairness is not None
    assert limited.fairness.gini_change == pytest.approx(0.025, abs=1e-12)
    # a retrieval dataset beside a classification one on one subset grid
    classes = ["a", "b", "c"]
    cls_curve = [CurvePoint(fraction=p.k / 8, k=p.k, seed=p.seed, accuracy=0.9, per_class_accuracy=[0.8, 0.9, 1.0])
                 for p in curve if p.kind == "random"]
    multi = recommend_multitask({
        "retrieval": TaskCurve(curve, groups, 8, "m", "w", "l", 0),
        "classes": TaskCurve(cls_curve, classes, 8, "m", "w", "l", 0)}, 0.1)
    rows = {r.dataset: r for r in multi.tasks}
    assert multi.k == 2
    assert rows["retrieval"].fairness.gini_at == pytest.approx(0.505, abs=1e-12)
    assert rows["classes"].fairness.gini_at == pytest.approx(gini(np.array([0.8, 0.9, 1.0])), abs=1e-12)


def test_a_retrieval_curve_stored_without_query_gini_falls_back_to_its_decile_vector() -> None:
    curve = [p.model_copy(update={"query_gini": None}) for p in _synthetic(GINIS)]
    rec = recommend(curve, list(DECILE_NAMES), 8, 0.1)
    assert rec.fairness.gini_at == pytest.approx(gini(np.linspace(0.2, 0.9, 10)), abs=1e-12)
    assert rec.fairness.gini_change == pytest.approx(0.0, abs=1e-12)
