"""analyze() end to end on a tiny random-weight model: reproducibility, cache, progress, cancel."""

from __future__ import annotations

from pathlib import Path

import pytest

from redundancy import AnalysisConfig, ProgressEvent, Runtime, analyze
from redundancy.errors import Cancelled
from redundancy.probing.lbfgs import C_GRID

TINY = {
    "model": {"name": "resnet18", "weights": "random"},
    "dataset": {"spec": "digits", "max_train": 200, "max_test": 100},
    "image_size": 32,
    "fractions": [0.05, 0.25, 1.0],
    "seeds": 2,
    "deltas": [0.05, 0.2],
    "baselines": [],
    "bootstrap": 200,
}


def test_same_config_gives_same_numbers_and_a_complete_report(tmp_path: Path) -> None:
    cfg = AnalysisConfig.model_validate({**TINY, "baselines": ["pca", "first_k", "random_projection"]})
    a = analyze(cfg, Runtime(cache_dir=None, data_root=tmp_path))
    b = analyze(cfg, Runtime(cache_dir=None, data_root=tmp_path))
    assert [p.accuracy for p in a.curve] == [p.accuracy for p in b.curve]
    assert [p.cka for p in a.curve] == [p.cka for p in b.curve]
    assert a.model.d == 512 and a.model.weights_random and a.model.weights_source == "random"
    assert a.dataset.sizes == {"train": 180, "val": 20, "test": 100}
    random = [p for p in a.curve if p.kind == "random"]
    assert len(random) == 2 + 2 + 1 and {p.k for p in random} == {26, 128, 512}
    # baselines beside them: PCA and first-k once per k, the random projection once per seed
    # (PCA stops at the rank of the train features: random weights on 180 images give a low rank)
    kinds = sorted(p.kind for p in a.curve if p.kind not in ("random", "pca"))
    assert kinds == ["first_k"] * 3 + ["random_projection"] * 5
    pca = [b.k for b in a.baselines if b.kind == "pca"]
    assert pca[0] == 26 and pca == sorted(set(pca)) and pca[-1] < 200
    assert all(p.cka_pair is not None and p.cka_debiased is None for p in random)
    assert all(s.ci_low is not None and s.ci_low <= s.accuracy_mean <= s.ci_high for s in a.summary)
    assert len(a.recommendations) == 2 and a.recommendations[0].delta == 0.05
    assert any("weights were random" in w for w in a.warnings)
    assert any("200 training rows for 512 neurons" in w for w in a.warnings)  # GCV fits on train + val
    assert set(a.timings) == {"load_model", "load_data", "extract", "probe", "advise"}
    data = a.model_dump(mode="json", by_alias=True)
    for key in ("config", "model", "dataset", "full_accuracy", "curve", "recommendations", "timings", "environment"):
        assert key in data
    rec = data["recommendations"][0]
    assert set(rec["fairness"]) >= {"gini_full", "gini_at", "gini_change", "cv_full", "cv_at", "cv_change",
                                    "worst_class_full", "worst_class_at", "most_hurt_classes"}


def test_second_analysis_with_other_fractions_skips_extraction(tmp_path: Path) -> None:
    rt = Runtime(cache_dir=tmp_path / "cache", data_root=tmp_path)
    first = analyze(AnalysisConfig.model_validate(TINY), rt)
    other = AnalysisConfig.model_validate({**TINY, "fractions": [0.25, 0.5], "deltas": [0.01]})
    second = analyze(other, rt)
    assert not first.environment.feature_cache_hit and second.environment.feature_cache_hit
    acc1 = {(p.k, p.seed): p.accuracy for p in first.curve}
    acc2 = {(p.k, p.seed): p.accuracy for p in second.curve}
    shared = set(acc1) & set(acc2)
    assert shared == {(128, 0), (128, 1), (512, 0)}
    assert all(acc1[key] == acc2[key] for key in shared)
    # a different cap is different data: a miss
    third = analyze(AnalysisConfig.model_validate({**TINY, "dataset": {**TINY["dataset"], "max_train": 150}}), rt)
    assert not third.environment.feature_cache_hit


def test_progress_runs_through_every_stage_in_order(tmp_path: Path) -> None:
    events: list[ProgressEvent] = []
    analyze(AnalysisConfig.model_validate(TINY), Runtime(cache_dir=None, data_root=tmp_path), progress=events.append)
    stages = list(dict.fromkeys(e.stage for e in events))
    assert stages == ["load_model", "load_data", "extract", "probe", "advise"]
    overall = [e.overall for e in events]
    assert overall == sorted(overall) and overall[-1] == pytest.approx(1.0)
    assert sum(e.stage == "extract" for e in events) > 3  # batch-level progress


@pytest.mark.parametrize("stop_after", [3, 12])
def test_should_stop_cancels_between_steps(tmp_path: Path, stop_after: int) -> None:
    calls = {"n": 0}

    def should_stop() -> bool:
        calls["n"] += 1
        return calls["n"] > stop_after

    cfg = AnalysisConfig.model_validate({**TINY, "batch_size": 16})
    with pytest.raises(Cancelled):
        analyze(cfg, Runtime(cache_dir=None, data_root=tmp_path), should_stop=should_stop)
    assert calls["n"] == stop_after + 1  # it stopped at the first "yes"


def test_logistic_probe_refinement_and_debiased_cka(tmp_path: Path) -> None:
    cfg = AnalysisConfig.model_validate(
        {**TINY, "probe": "logistic", "logistic_epochs": 3, "fractions": [0.02, 0.5, 1.0], "deltas": [0.1],
         "refine_resolution": 0.05, "cka": "debiased", "baselines": []}
    )
    r = analyze(cfg, Runtime(cache_dir=tmp_path / "c", data_root=tmp_path))
    assert r.probe == "logistic" and r.baselines == []
    random = [p for p in r.curve if p.kind == "random"]
    assert all(min(abs(1 / p.lam - c) / c for c in C_GRID) < 1e-12 for p in random)  # L-BFGS: lam = 1/C
    assert all(p.cka_debiased is not None for p in random)
    rec = r.recommendations[0]
    assert rec.holds_ci_lower is not None and rec.ci_low is not None
    assert rec.holds_worst_seed == (rec.worst_seed_accuracy >= rec.threshold - 1e-12)


def _weak_signal_features(n: int = 600, d: int = 40, seed: int = 0):
    """Every neuron a weak, noisy copy of a two-class signal: accuracy grows steadily with k."""
    import numpy as np

    from redundancy.sources.extraction import Features
    from redundancy.sources.stats import GramStats

    rng = np.random.default_rng(seed)

    def draw(m: int):
        y = rng.integers(0, 2, size=m)
        return (y[:, None] * 0.25 + rng.normal(size=(m, d))).astype(np.float32), y

    (xt, yt), (xv, yv), (xs, ys) = draw(n), draw(n // 10), draw(2000)
    return Features(GramStats.from_features(xt, yt, 2), xt, yt, xv, yv, xs, ys, "none")


@pytest.mark.parametrize("lambda_select", ["gcv", "val"])
def test_refinement_bisects_inside_the_bracket(lambda_select: str) -> None:
    from redundancy.advice.recommend import summarize, threshold
    from redundancy.advice.refine import bracket
    from redundancy.pipeline import run_probes

    feats = _weak_signal_features()
    cfg = AnalysisConfig.model_validate({
        **TINY, "fractions": [0.05, 0.5, 1.0], "deltas": [0.02], "refine_resolution": 0.05, "bootstrap": 0,
        "lambda_select": lambda_select,
    })
    run = run_probes(cfg, feats)
    grid = [p for p in run.curve if p.kind == "random"]
    summary = summarize(grid)
    bar = threshold(summary[-1].accuracy_mean, 0.02, "relative")
    k_fail, k_pass = bracket([(s.k, s.accuracy_mean) for s in summary], bar)
    assert (k_fail, k_pass) == (20, 40)  # the grid alone cannot place f* closer than half the layer
    refined = [p for p in run.curve if p.kind == "refinement"]
    ks = sorted({p.k for p in refined})
    assert ks and all(k_fail < k < k_pass for k in ks)
    assert len(refined) == len(ks) * cfg.seeds
    assert all(p.selection == lambda_select and p.selection_score is not None for p in refined)


def test_the_largest_accepted_seed_runs(tmp_path: Path) -> None:
    """`seed` is capped at MAX_SEED at the edge; every seeded step must accept that much (a larger seed
    used to pass validation and fail in the worker as internal_error)."""
    from redundancy.config import MAX_SEED

    cfg = AnalysisConfig.model_validate({**TINY, "seed": MAX_SEED, "probe": "logistic", "logistic_epochs": 1,
                                         "baselines": ["random_projection"]})
    report = analyze(cfg, Runtime(cache_dir=None, data_root=tmp_path))
    assert report.config.seed == MAX_SEED and {p.fraction for p in report.curve} == {0.05, 0.25, 1.0}
    assert all(0.0 <= p.accuracy <= 1.0 for p in report.curve)
    with pytest.raises(ValueError, match="seed"):
        AnalysisConfig.model_validate({**TINY, "seed": MAX_SEED + 1})
