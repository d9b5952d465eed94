"""Retrieval scores and blocked exact search against slow, obvious numpy computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.neighbors import NearestNeighbors

from redundancy.config import AnalysisConfig
from redundancy.probing.retrieval import (
    DECILES,
    RetrievalScorer,
    block_sizes,
    decile_means,
    pca_axes,
    per_query_scores,
    search,
)


def brute_top(queries: np.ndarray, corpus: np.ndarray, k: int, similarity: str) -> np.ndarray:
    """Every similarity in float64, each query's corpus sorted by (similarity desc, index asc)."""
    q, c = queries.astype(np.float64), corpus.astype(np.float64)
    if similarity == "cosine":
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
        c = c / np.linalg.norm(c, axis=1, keepdims=True)
    out = []
    for row in q:
        sims = [float(np.dot(row, doc)) for doc in c]
        order = sorted(range(len(c)), key=lambda j: (-sims[j], j))
        out.append(order[:k])
    return np.array(out)


def brute_scores(top: np.ndarray, corpus_y: np.ndarray, query_y: np.ndarray) -> dict[str, list[float]]:
    """nDCG@10, recall@10, AP@10 by loops over each query's list, from the definitions."""
    out: dict[str, list[float]] = {"ndcg@10": [], "recall@10": [], "map@10": []}
    for row, y in zip(top, query_y, strict=True):
        n_rel = int(sum(1 for c in corpus_y if c == y))
        if n_rel == 0:
            for v in out.values():
                v.append(math.nan)
            continue
        rel = [1.0 if corpus_y[j] == y else 0.0 for j in row[:10]]
        dcg = sum(r / math.log2(i + 1) for i, r in enumerate(rel, start=1))
        idcg = sum(1 / math.log2(i + 1) for i in range(1, min(10, n_rel) + 1))
        out["ndcg@10"].append(dcg / idcg)
        out["recall@10"].append(sum(rel) / n_rel)
        ap, hits = 0.0, 0
        for i, r in enumerate(rel, start=1):
            if r:
                hits += 1
                ap += hits / i
        out["map@10"].append(ap / min(10, n_rel))
    return out


@pytest.fixture
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    corpus = rng.standard_normal((73, 12))
    queries = rng.standard_normal((31, 12))
    corpus_y = rng.integers(0, 6, 73)
    query_y = rng.integers(0, 7, 31)  # label 6 has no corpus item: those queries have no score
    return queries, corpus, query_y, corpus_y


@pytest.mark.parametrize("similarity", ["cosine", "dot"])
def test_search_equals_brute_force(data, similarity: str) -> None:
    queries, corpus, _, _ = data
    top = search(queries, corpus, 10, similarity, dtype=torch.float64)
    assert np.array_equal(top, brute_top(queries, corpus, 10, similarity))


@pytest.mark.parametrize("budget", [1, 7, 10, 64, 500, 10**9])
def test_block_size_does_not_change_results(data, budget: int) -> None:
    queries, corpus, _, _ = data
    whole = search(queries, corpus, 10, "cosine", dtype=torch.float64, budget=10**9)
    assert np.array_equal(search(queries, corpus, 10, "cosine", dtype=torch.float64, budget=budget), whole)
    b_q, b_c = block_sizes(len(queries), len(corpus), 10, budget)
    assert b_q * b_c <= max(budget, 10)


def test_ties_go_to_the_lower_index() -> None:
    corpus = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [2.0, 0.0], [1.0, 0.0]])
    top = search(np.array([[1.0, 0.0]]), corpus, 4, "cosine", budget=2)
    assert top.tolist() == [[0, 2, 3, 4]]  # four equal cosines of 1, in index order across blocks


def test_scores_equal_loops_over_the_definitions(data) -> None:
    queries, corpus, query_y, corpus_y = data
    top = brute_top(queries, corpus, 10, "cosine")
    slow = brute_scores(top, corpus_y, query_y)
    assert np.isnan(slow["ndcg@10"]).sum() == (query_y == 6).sum() > 0
    for metric, expected in slow.items():
        got = per_query_scores(metric, top, top, corpus_y, query_y)
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12, equal_nan=True)


def test_overlap_counts_shared_results() -> None:
    top = np.array([[1, 2, 3, 4], [5, 6, 7, 8]])
    full = np.array([[4, 3, 9, 10], [5, 6, 7, 8]])
    assert per_query_scores("top10_overlap", top, full, np.zeros(11), np.zeros(2)).tolist() == [0.5, 1.0]


def test_scorer_full_layer_and_subsets_against_brute_force(data) -> None:
    queries, corpus, query_y, corpus_y = data
    scorer = RetrievalScorer(corpus, corpus_y, queries, query_y, "ndcg@10", "cosine")
    eligible = query_y != 6
    full = np.array(brute_scores(brute_top(queries, corpus, 10, "cosine"), corpus_y, query_y)["ndcg@10"])[eligible]
    res = scorer.subset(np.arange(12))
    np.testing.assert_allclose(res.correct, full, atol=1e-12)
    assert res.accuracy == pytest.approx(full.mean(), abs=1e-12)
    sub = np.array([0, 3, 5, 11])
    part = np.array(brute_scores(brute_top(queries[:, sub], corpus[:, sub], 10, "cosine"), corpus_y,
                                 query_y)["ndcg@10"])[eligible]
    np.testing.assert_allclose(scorer.subset(sub).correct, part, atol=1e-12)
    assert not np.allclose(part, full)
    overlap = RetrievalScorer(corpus, corpus_y, queries, query_y, "top10_overlap", "cosine")
    assert overlap.subset(np.arange(12)).accuracy == 1.0
    assert overlap.subset(sub).accuracy < 1.0


def test_pca_at_full_width_is_a_rotation(data) -> None:
    queries, corpus, query_y, corpus_y = data
    scorer = RetrievalScorer(corpus, corpus_y, queries, query_y, "top10_overlap", "dot")
    r = pca_axes(corpus)
    np.testing.assert_allclose(r.T @ r, np.eye(12), atol=1e-10)
    assert scorer.projection(r).accuracy == 1.0


def test_decile_means_are_the_sorted_groups() -> None:
    scores = np.arange(25, dtype=float)[::-1]
    got = decile_means(scores)
    assert len(got) == DECILES and np.all(np.diff(got) > 0)
    assert got[0] == pytest.approx(np.mean([0, 1, 2]))  # array_split: the first 5 groups get 3
    with pytest.raises(ValueError):
        decile_means(np.ones(9))


def test_label_retrieval_neighbours_equal_sklearn(data) -> None:
    queries, corpus, _, _ = data
    nn = NearestNeighbors(n_neighbors=10, metric="cosine", algorithm="brute").fit(corpus)
    _, idx = nn.kneighbors(queries)
    assert np.array_equal(search(queries, corpus, 10, "cosine", dtype=torch.float64), idx)


def test_config_task_metric_similarity() -> None:
    base = {"model": {"name": "resnet18"}, "dataset": {"spec": "digits"}}
    assert AnalysisConfig.model_validate(base).score_metric == "accuracy"
    retrieval = AnalysisConfig.model_validate({**base, "task": "retrieval"})
    assert retrieval.score_metric == "ndcg@10"
    assert retrieval.config_hash() != AnalysisConfig.model_validate(base).config_hash()
    named = AnalysisConfig.model_validate({**base, "task": "retrieval", "metric": "ndcg@10"})
    assert named.config_hash() == retrieval.config_hash()
    assert AnalysisConfig.model_validate({**base, "metric": "accuracy"}).config_hash() == AnalysisConfig.model_validate(
        base).config_hash()
    for bad, field in [({"metric": "ndcg@10"}, "metric"), ({"similarity": "dot"}, "similarity"),
                       ({"task": "retrieval", "metric": "accuracy"}, "metric"), ({"task": "ranking"}, "task")]:
        with pytest.raises(Exception) as err:
            AnalysisConfig.model_validate({**base, **bad})
        assert err.value.errors()[0]["loc"] == (field,)


def test_recommendation_names_the_metric_and_answers_any_delta() -> None:
    from redundancy.probing.retrieval import DECILE_NAMES
    from redundancy.report import CurvePoint
    from redundancy.verdict import advise

    d = 8

    def point(k: int, seed: int, score: float, kind: str = "random", metric: str = "ndcg@10") -> CurvePoint:
        vec = list(np.linspace(score - 0.2, score + 0.2, DECILES))
        return CurvePoint(fraction=k / d, k=k, seed=seed, accuracy=score, per_class_accuracy=vec, metric=metric,
                          kind=kind)

    curve = [point(8, 0, 0.6), point(2, 0, 0.3), point(2, 1, 0.32), point(4, 0, 0.58), point(4, 1, 0.59),
             point(4, 0, 0.6, "first_k")]
    rec = advise(curve, list(DECILE_NAMES), d, 0.05)
    assert (rec.metric, rec.k, rec.full_score) == ("ndcg@10", 4, 0.6)
    assert rec.score == rec.accuracy == pytest.approx(0.585)
    assert "ndcg@10" in rec.note and rec.verdict is not None and rec.verdict.method == "first_k"
    assert rec.fairness.worst_class_full == pytest.approx(0.4)
    loose = advise(curve, list(DECILE_NAMES), d, 0.5)
    assert loose.k == 2 and loose.metric == "ndcg@10"
    classification = advise([p.model_copy(update={"metric": "accuracy"}) for p in curve], list(DECILE_NAMES), d, 0.05)
    assert classification.metric == "accuracy" and classification.score == classification.accuracy
    assert classification.full_score == classification.full_accuracy


def test_too_few_scored_queries_is_a_dataset_error_naming_the_field() -> None:
    from redundancy.errors import DatasetFormatError

    rng = np.random.default_rng(0)
    corpus_y = np.zeros(20, dtype=int)
    query_y = np.array([0] * 9 + [1] * 20)  # nine queries have a relevant item
    with pytest.raises(DatasetFormatError, match="only 9 test items") as err:
        RetrievalScorer(rng.standard_normal((20, 4)), corpus_y, rng.standard_normal((29, 4)), query_y)
    assert err.value.field == "dataset.max_test"
    overlap = RetrievalScorer(rng.standard_normal((20, 4)), corpus_y, rng.standard_normal((29, 4)), query_y,
                              "top10_overlap")  # needs no labels: every query counts
    assert overlap.subset(np.arange(4)).correct.shape == (29,)


def test_explicit_qrels_scores_equal_loops_and_label_relevance_when_they_agree(data) -> None:
    from redundancy.probing.retrieval import Qrels

    queries, corpus, query_y, corpus_y = data
    rng = np.random.default_rng(9)
    pairs = np.array([(q, c) for q in range(len(queries)) for c in range(len(corpus)) if rng.random() < 0.1])
    top = brute_top(queries, corpus, 10, "cosine")
    qrels = Qrels(pairs, len(queries), len(corpus))
    relevant = [set(pairs[pairs[:, 0] == q, 1].tolist()) for q in range(len(queries))]
    for q, row in enumerate(top):  # the definitions, by loops over each query's relevant set
        rel = [1.0 if j in relevant[q] else 0.0 for j in row]
        n_rel = len(relevant[q])
        got = per_query_scores_from(qrels, top)[q]
        if n_rel == 0:
            assert np.isnan(got)
            continue
        dcg = sum(r / math.log2(i + 1) for i, r in enumerate(rel, start=1))
        assert got == pytest.approx(dcg / sum(1 / math.log2(i + 1) for i in range(1, min(10, n_rel) + 1)), abs=1e-12)
    # qrels built from the labels score exactly as label relevance
    same = np.array([(q, c) for q in range(len(queries)) for c in range(len(corpus)) if query_y[q] == corpus_y[c]])
    by_pairs = RetrievalScorer(corpus, corpus_y, queries, query_y, "map@10", qrels=same).subset(np.arange(12))
    by_labels = RetrievalScorer(corpus, corpus_y, queries, query_y, "map@10").subset(np.arange(12))
    np.testing.assert_array_equal(by_pairs.correct, by_labels.correct)


def per_query_scores_from(qrels, top: np.ndarray) -> np.ndarray:
    from redundancy.probing.retrieval import ndcg

    return ndcg(qrels.relevance(top), qrels.counts)
