"""The deployment verdict on a small hand-made curve, each rule against a direct computation: methods side
by side, the verdict's tie-break, the nested flag, budgets, fairness limits, storage; and the int8
re-score against numpy quantisation."""

from __future__ import annotations

import numpy as np
import pytest

from redundancy.advice.fairness import gini
from redundancy.advice.recommend import recommend
from redundancy.budgets import INDEX_LIMITS, budget_k
from redundancy.errors import InvalidConfigError
from redundancy.quantise import calibrate, measure_int8, roundtrip
from redundancy.report import CurvePoint
from redundancy.sources.stats import standardised_from_rows
from redundancy.verdict import Budget, FairnessLimits, advise, complete

D = 8
CLASSES = ["a", "b"]


def pt(kind: str, k: int, seed: int, per_class: list[float]) -> CurvePoint:
    return CurvePoint(fraction=k / D, k=k, seed=seed, accuracy=float(np.mean(per_class)),
                      per_class_accuracy=per_class, kind=kind, lam=1.0)


# per-class accuracy by (kind, k): one row per seed (accuracy = the row's mean: balanced classes)
TABLE: dict[tuple[str, int], list[list[float]]] = {
    ("random", 2): [[0.70, 0.50], [0.60, 0.60]],  # 0.60, 0.60
    ("random", 4): [[0.90, 0.80], [0.86, 0.84]],  # 0.85, 0.85
    ("random", 8): [[0.92, 0.88], [0.92, 0.88]],  # 0.90 (the full layer)
    ("first_k", 2): [[0.60, 0.60]],  # 0.60
    ("first_k", 4): [[1.00, 0.70]],  # 0.85: meets like random at 4, worst class 0.70
    ("first_k", 8): [[0.92, 0.88]],
    ("pca", 2): [[0.70, 0.60]],  # 0.65
    ("pca", 4): [[0.88, 0.82]],  # 0.85: ties the others at k = 4
    ("random_projection", 2): [[0.5, 0.5], [0.5, 0.5]],
    ("random_projection", 4): [[0.7, 0.7], [0.7, 0.7]],
    ("random_projection", 8): [[0.9, 0.9], [0.9, 0.9]],
}
CURVE = [pt(kind, k, s, row) for (kind, k), rows in TABLE.items() for s, row in enumerate(rows)]


def direct_fewest(kind: str, bar: float) -> int:
    """The fewest k below d whose seed-mean accuracy reaches `bar`, else d: written out on the table."""
    ks = sorted(k for (kd, k) in TABLE if kd == kind and k < D)
    return next((k for k in ks if np.mean(TABLE[(kind, k)]) >= bar - 1e-12), D)


def test_methods_side_by_side_and_the_verdict_follow_the_same_rule() -> None:
    rec = advise(CURVE, CLASSES, D, 0.06)  # bar = 0.94 · 0.90 = 0.846
    bar = 0.94 * 0.90
    by = {m.method: m for m in rec.methods}
    assert set(by) == {"random_subset", "first_k", "pca", "random_projection"}
    for method, kind in [("random_subset", "random"), ("first_k", "first_k"), ("pca", "pca"),
                         ("random_projection", "random_projection")]:
        assert by[method].k == direct_fewest(kind, bar), method
    assert by["random_subset"].k == recommend(CURVE, CLASSES, D, 0.06).k == rec.k == 4
    assert not by["random_projection"].met_below_full and by["random_projection"].k == D
    # three methods meet at k = 4: the slice (first_k) is the cheapest to serve
    assert rec.verdict is not None and rec.verdict.method == "first_k" and rec.verdict.k == 4
    assert "tied with" in rec.verdict.reason
    # a looser δ: PCA alone meets at 2 (0.65 ≥ 0.9·0.7 = 0.63); random and first_k reach 0.60 only
    loose = advise(CURVE, CLASSES, D, 0.3)
    assert loose.verdict is not None and (loose.verdict.method, loose.verdict.k) == ("pca", 2)
    # nothing meets a tiny δ below d: the full layer
    tight = advise(CURVE, CLASSES, D, 0.001)
    assert tight.verdict is not None and (tight.verdict.method, tight.verdict.k) == ("full_layer", D)


def test_nested_flag_within_the_seed_spread() -> None:
    rec = advise(CURVE, CLASSES, D, 0.06)
    # first_k equals the random mean at k = 2 and 4: nested
    assert rec.verdict is not None and rec.verdict.nested is True
    spread = 0.85 - np.std([0.85, 0.85], ddof=1)  # random at 4: no spread → first_k must reach 0.85
    worse = [p if p.kind != "first_k" or p.k != 4 else pt("first_k", 4, 0, [0.8, 0.7]) for p in CURVE]
    assert spread > 0.75
    rec2 = advise(worse, CLASSES, D, 0.06)
    assert rec2.verdict is not None and rec2.verdict.nested is False and "k = 4" in (rec2.verdict.nested_note or "")
    no_first = [p for p in CURVE if p.kind != "first_k"]
    rec3 = advise(no_first, CLASSES, D, 0.06)
    assert rec3.verdict is not None and rec3.verdict.nested is None
    assert {m.method for m in rec3.methods} == {"random_subset", "pca", "random_projection"}


def test_budget_answers_the_best_score_within_the_widest_k() -> None:
    rec = recommend(CURVE, CLASSES, D, 0.06)
    out = complete(rec, CURVE, CLASSES, budget=Budget(max_dims=3)).budget
    assert out is not None and out.max_k == 3
    for m in out.methods:
        kind = {"random_subset": "random"}.get(m.method, m.method)
        ks = [k for (kd, k) in TABLE if kd == kind and k <= 3]
        best = max(ks, key=lambda k: (np.mean(TABLE[(kind, k)]), -k))
        assert m.k == best and m.score == pytest.approx(np.mean(TABLE[(kind, best)]))
    assert out.best == "pca"  # 0.65 at k = 2
    # 16 bytes at float16 is 8 dims: the full layer; at float32, 4 dims
    assert complete(rec, CURVE, CLASSES, budget=Budget(max_bytes=16, dtype="float16")).budget.max_k == 8  # type: ignore[union-attr]
    b32 = complete(rec, CURVE, CLASSES, budget=Budget(max_bytes=16, dtype="float32")).budget
    assert b32 is not None and b32.max_k == 4 and all((m.k or 0) <= 4 for m in b32.methods)
    assert all(m.bytes_per_vector == 4 * m.k for m in b32.methods if m.k)
    none = complete(rec, CURVE, CLASSES, budget=Budget(max_dims=1)).budget
    assert none is not None and none.best is None and all(m.k is None for m in none.methods)
    assert budget_k(D, 5, 3, "int8") == 3
    with pytest.raises(InvalidConfigError):
        Budget(max_dims=3, dtype="int4")


def test_fairness_limits_pick_the_smallest_k_meeting_both() -> None:
    rec = recommend(CURVE, CLASSES, D, 0.3)  # bar 0.63: random meets nowhere below 4 (0.60 at 2)
    # worst class per seed: full 0.88, 0.88; at 4: 0.80, 0.84 → change −0.06
    full_worst = np.mean([min(r) for r in TABLE[("random", 8)]])
    at4 = np.mean([min(r) for r in TABLE[("random", 4)]])
    assert at4 - full_worst == pytest.approx(-0.06)
    loose = complete(rec, CURVE, CLASSES, limits=FairnessLimits(max_worst_class_drop=0.07)).constrained
    assert loose is not None and loose.met and loose.k == 4
    assert loose.fairness is not None and loose.fairness.worst_class_change >= -0.07
    strict = complete(rec, CURVE, CLASSES, limits=FairnessLimits(max_worst_class_drop=0.05)).constrained
    assert strict is not None and not strict.met and strict.k == D and "No tested fraction" in strict.note
    # Gini per seed: at 4 the seeds' Ginis, against the full layer's
    g_change = np.mean([gini(np.array(r)) for r in TABLE[("random", 4)]]) - np.mean(
        [gini(np.array(r)) for r in TABLE[("random", 8)]])
    ok = complete(rec, CURVE, CLASSES, limits=FairnessLimits(max_gini_increase=g_change + 1e-6)).constrained
    no = complete(rec, CURVE, CLASSES, limits=FairnessLimits(max_gini_increase=g_change - 1e-6)).constrained
    assert ok is not None and ok.k == 4 and no is not None and no.k == D
    # first_k at 4 loses 0.18 on its worst class: under a 0.07 limit it falls back to the full layer
    assert {m.method: m.k for m in loose.methods}["first_k"] == D
    with pytest.raises(InvalidConfigError):
        FairnessLimits(max_worst_class_drop=-0.1)


def test_storage_table_for_the_full_layer_and_the_verdict() -> None:
    rec = advise(CURVE, CLASSES, D, 0.06)
    assert rec.storage is not None
    assert rec.storage.full.bytes_per_vector == {"float32": 32, "float16": 16, "int8": 8}
    assert rec.storage.verdict.bytes_per_million["float16"] == 4 * 2 * 1_000_000
    assert INDEX_LIMITS == {"pgvector_vector_hnsw": 2000, "pgvector_halfvec_hnsw": 4000}
    from redundancy.verdict import storage_at  # lazy: one helper checked at the limits' edges

    assert storage_at(2000).fits == {"pgvector_vector_hnsw": True, "pgvector_halfvec_hnsw": True}
    assert storage_at(2001).fits == {"pgvector_vector_hnsw": False, "pgvector_halfvec_hnsw": True}
    assert storage_at(4001).fits == {"pgvector_vector_hnsw": False, "pgvector_halfvec_hnsw": False}


def test_int8_rescore_matches_numpy_quantisation() -> None:
    rng = np.random.default_rng(0)
    d, c = 12, 3
    centres = rng.normal(size=(c, d)) * 2
    y_tr, y_val, y_te = (rng.integers(0, c, n) for n in (300, 60, 200))
    x_tr, x_val, x_te = (centres[y] + rng.normal(size=(len(y), d)) for y in (y_tr, y_val, y_te))
    problem = standardised_from_rows(x_tr, y_tr, c)
    lam = 5.0
    curve = [CurvePoint(fraction=1 / 3, k=4, seed=0, accuracy=0.5, per_class_accuracy=[0.5] * c, kind="first_k",
                        lam=lam)]
    # the slow obvious computation: numpy min/max per dimension, 256 levels, the ridge weights by solve
    lo, hi = x_val.min(0), x_val.max(0)
    step = (hi - lo) / 255
    xq = lo + np.clip(np.round((x_te - lo) / step), 0, 255) * step
    assert np.allclose(roundtrip(x_te, *calibrate(x_val)), xq)
    assert np.abs(xq - x_te)[(x_te >= lo) & (x_te <= hi)].max() <= step.max() / 2 + 1e-12
    first = np.arange(4)
    g = problem.gram[np.ix_(first, first)]
    w = np.linalg.solve(g + lam * np.eye(4), problem.targets[first])
    pred = (problem.transform(xq)[:, first] @ w + problem.prior).argmax(1)
    expected = float((pred == y_te).mean())
    [got] = measure_int8(problem, None, None, x_val, x_te, y_te, curve, [("first_k", 4)], 0, "gcv")
    assert got.accuracy_quantised == pytest.approx(expected)
    pred_float = (problem.transform(x_te)[:, first] @ w + problem.prior).argmax(1)
    assert got.accuracy_float == pytest.approx(float((pred_float == y_te).mean()))
    assert got.change == pytest.approx(expected - got.accuracy_float) and got.seeds == 1
