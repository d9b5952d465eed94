"""A retrieval job's Gini is the exact Gini of per-query scores (issue 20, must-have 3), end to end: every
curve point the engine writes (random subsets and the first-k baseline) carries `query_gini` equal to a
brute-force numpy Gini of brute-force per-query nDCG@10 on the same subset, and each recommendation's
`gini_*` is the mean over seeds of those."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from redundancy import AnalysisConfig, Runtime
from redundancy.advice.fairness import gini
from redundancy.pipeline import run_analysis
from redundancy.probing import draw_subset

N_C, N_Q, D = 300, 70, 24


def _brute_ndcg10(q: np.ndarray, c: np.ndarray, relevant: dict[int, set[int]]) -> np.ndarray:
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    c = c / np.linalg.norm(c, axis=1, keepdims=True)
    out = []
    for i in range(len(q)):
        if not relevant[i]:
            continue
        order = np.lexsort((np.arange(len(c)), -(q[i] @ c.T)))[:10]
        dcg = sum(1.0 / math.log2(r + 2) for r, j in enumerate(order) if j in relevant[i])
        out.append(dcg / sum(1.0 / math.log2(r + 2) for r in range(min(10, len(relevant[i])))))
    return np.array(out)


def _brute_gini(s: np.ndarray) -> float:
    return float(np.abs(s[:, None] - s[None, :]).mean() / (2 * s.mean()))


def test_every_point_and_recommendation_reads_the_exact_per_query_gini(tmp_path: Path) -> None:
    rng = np.random.default_rng(2021)
    topics = rng.standard_normal((8, D))
    doc_topic, query_topic = rng.integers(0, 8, N_C), rng.integers(0, 8, N_Q)
    corpus = (topics[doc_topic] + 1.2 * rng.standard_normal((N_C, D))).astype(np.float32)
    queries = (topics[query_topic] + 1.2 * rng.standard_normal((N_Q, D))).astype(np.float32)
    qrels = np.array([(q, c) for q in range(N_Q) for c in np.flatnonzero(doc_topic == query_topic[q])])
    path = tmp_path / "pairs.npz"
    np.savez(path, corpus=corpus, queries=queries, qrels=qrels)
    config = AnalysisConfig.model_validate({
        "dataset": {"spec": f"embeddings:{path}"}, "task": "retrieval", "fractions": [0.25, 0.5, 1.0], "seeds": 3,
        "deltas": [0.05, 0.5], "bootstrap": 50, "baselines": ["first_k"], "feature_dtype": "float32"})
    report = run_analysis(config, Runtime(cache_dir=tmp_path / "cache", work_dir=tmp_path / "work",
                                          data_root=tmp_path)).report
    relevant = {i: set(qrels[qrels[:, 0] == i, 1].tolist()) for i in range(N_Q)}
    brute: dict[tuple[str, int, int], float] = {}
    for p in report.curve:
        cols = (np.arange(p.k) if p.kind == "first_k"
                else draw_subset(D, p.k, p.seed, config.seed, config.subsets))
        scores = _brute_ndcg10(queries[:, cols].astype(np.float64), corpus[:, cols].astype(np.float64), relevant)
        assert p.query_gini == pytest.approx(_brute_gini(scores), abs=1e-12), (p.kind, p.k, p.seed)
        assert p.accuracy == pytest.approx(scores.mean(), abs=1e-12)
        brute[(p.kind, p.k, p.seed)] = _brute_gini(scores)
    assert {kind for kind, _, _ in brute} == {"random", "first_k"}

    def seed_mean(k: int) -> float:
        return float(np.mean([g for (kind, kk, _), g in brute.items() if kind == "random" and kk == k]))

    ks = set()
    for rec in report.recommendations:
        ks.add(rec.k)
        assert rec.fairness.gini_full == pytest.approx(seed_mean(D), abs=1e-12)
        assert rec.fairness.gini_at == pytest.approx(seed_mean(rec.k), abs=1e-12)
        assert rec.fairness.gini_change == pytest.approx(seed_mean(rec.k) - seed_mean(D), abs=1e-12)
    assert min(ks) < D  # at least one answer below the full layer
    k = min(ks)
    deciles = np.mean([gini(np.array(p.per_class_accuracy)) for p in report.curve if p.kind == "random" and p.k == k])
    assert abs(seed_mean(k) - deciles) > 1e-3  # not the Gini of the decile means
