"""The multi-dataset answer's fairness is the single-task answer's: per seed, never from the
seed-averaged per-class vector (issue 16, must-have 1)."""

from __future__ import annotations

import numpy as np
import pytest

from redundancy.advice.fairness import gini
from redundancy.advice.recommend import recommend
from redundancy.deploy import TaskCurve, recommend_multitask
from redundancy.report import CurvePoint

D, GRID, SEEDS = 256, [1, 3, 8, 26, 51, 128, 205, 256], 4
FIELDS = ("gini_change", "cv_change", "worst_class_change", "range_change", "gini_at", "gini_full",
          "worst_class_at", "seeds_at", "seeds_full")


def _task(rng: np.random.Generator, classes: int) -> TaskCurve:
    """A rising curve whose seeds disagree class by class (so per-seed and seed-averaged Gini differ)."""
    curve = []
    for k in GRID:
        level = 0.3 + 0.6 * np.log1p(k) / np.log1p(D)
        for seed in range(1 if k == D else SEEDS):
            per_class = np.clip(level + rng.normal(0, 0.25, classes), 0, 1)
            curve.append(CurvePoint(fraction=k / D, k=k, seed=seed, accuracy=float(per_class.mean()),
                                    per_class_accuracy=per_class.tolist(), cka=0.5))
    return TaskCurve(curve=curve, classes=[f"c{i}" for i in range(classes)], d=D, model="m",
                     weights_identity="w", layer="pre_logits", master_seed=0)


def test_each_task_fairness_equals_its_single_task_recommendation_at_the_same_k() -> None:
    rng = np.random.default_rng(16)
    compared = 0
    for trial in range(60):
        tasks = {"A": _task(rng, 10), "B": _task(rng, 6)}
        delta = float(rng.choice([0.01, 0.05, 0.1, 0.2]))
        criterion = "mean" if trial % 2 else "worst_seed"
        got = recommend_multitask(tasks, delta, "relative", criterion)  # type: ignore[arg-type]
        for row in got.tasks:
            t = tasks[row.dataset]
            # the Done-when check, from the curve by hand: mean over seeds of each seed's Gini at k, minus the full's
            at = [gini(np.array(p.per_class_accuracy)) for p in t.curve if p.k == got.k]
            full = [gini(np.array(p.per_class_accuracy)) for p in t.curve if p.k == D]
            assert row.fairness.gini_change == pytest.approx(np.mean(at) - np.mean(full), abs=1e-9)
            assert row.fairness.seeds_at == len(at)
            if row.own_k != got.k:
                continue
            single = recommend(t.curve, t.classes, D, delta, "relative", criterion)  # type: ignore[arg-type]
            assert single.k == got.k
            for name in FIELDS:
                assert getattr(row.fairness, name) == pytest.approx(getattr(single.fairness, name), abs=1e-9), name
            assert [c.cls for c in row.fairness.most_hurt_classes] == [c.cls for c in single.fairness.most_hurt_classes]
            compared += 1
    assert compared >= 30


def test_the_seed_averaged_vector_would_give_another_answer() -> None:
    """Guards the test above: on these curves the seed-averaged vector's Gini change differs."""
    rng = np.random.default_rng(16)
    tasks = {"A": _task(rng, 10), "B": _task(rng, 6)}
    got = recommend_multitask(tasks, 0.3)
    row = got.tasks[0]
    averaged = np.mean([p.per_class_accuracy for p in tasks["A"].curve if p.k == got.k], axis=0)
    full = next(p.per_class_accuracy for p in tasks["A"].curve if p.k == D)
    assert got.k < D
    assert abs(row.fairness.gini_change - (gini(averaged) - gini(np.array(full)))) > 1e-3


def test_a_classification_and_a_retrieval_dataset_share_one_subset() -> None:
    """Issue 20: a retrieval job of the same model, weights, layer and seed answers beside a classification job;
    each row names its metric and is held to its own threshold; a stricter retrieval curve binds."""
    rng = np.random.default_rng(20)
    classification = _task(rng, 10)
    retrieval = _task(rng, 10)
    retrieval = TaskCurve(
        curve=[p.model_copy(update={"metric": "ndcg@10", "accuracy": p.accuracy * (p.k / D) ** 0.05})
               for p in retrieval.curve],
        classes=[f"queries {10 * i}–{10 * (i + 1)}%" for i in range(10)], d=D, model="m", weights_identity="w",
        layer="pre_logits", master_seed=0)
    got = recommend_multitask({"labels": classification, "search": retrieval}, 0.1)
    rows = {r.dataset: r for r in got.tasks}
    assert rows["labels"].metric == "accuracy" and rows["search"].metric == "ndcg@10"
    for name, task in (("labels", classification), ("search", retrieval)):
        single = recommend(task.curve, task.classes, D, 0.1)
        assert single.metric == rows[name].metric and rows[name].own_k == single.k
        assert rows[name].threshold == pytest.approx(single.threshold)
    assert got.k == max(r.own_k for r in got.tasks)
