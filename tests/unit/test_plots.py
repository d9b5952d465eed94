"""Plots render to valid PNG and SVG; their thresholds and f* are `recommend()`'s, for every δ."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pytest

from redundancy.advice.recommend import intervals_from_summary, recommend, summarize
from redundancy.errors import InvalidConfigError
from redundancy.plots import build_figure, markers, render
from redundancy.report import CurvePoint, Report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
D = 200
CLASSES = list("abcd")


def _point(fraction: float, k: int, seed: int, acc: float, kind: str = "random", **extra) -> dict:
    rng = np.random.default_rng([k, seed, len(kind)])
    per_class = np.clip(acc + rng.normal(scale=(1 - acc) / 2, size=len(CLASSES)), 0, 1).tolist()
    return {
        "fraction": fraction, "k": k, "seed": seed, "accuracy": acc, "per_class_accuracy": per_class,
        "cka": min(1.0, 0.2 + fraction), "lam": 1.0, "kind": kind, **extra,
    }


def _report(baselines: bool = False, refinement: bool = False, deltas=(0.01, 0.05)) -> dict:
    """A complete report's JSON: a rising curve, seeds spread ±0.005, stored recommendations from `recommend`."""
    curve = []
    for f in (0.005, 0.01, 0.05, 0.1, 0.5):
        k = round(f * D)
        for s in range(3):
            curve.append(_point(f, k, s, 0.9 - 0.0025 / f**0.5 + 0.005 * (s - 1), cka_pair=f**0.3))
    curve.append(_point(1.0, D, 0, 0.9))
    if baselines:
        for f in (0.01, 0.1, 0.5, 1.0):
            k = round(f * D)
            curve.append(_point(f, k, 0, 0.88, kind="pca"))
            curve.append(_point(f, k, 0, 0.7, kind="first_k"))
            curve += [_point(f, k, s, 0.8 + 0.01 * s, kind="random_projection") for s in range(2)]
    if refinement:  # passes δ = 0.01 (threshold 0.891) where the grid's 0.1 (≈ 0.892 − …) is close
        curve.append(_point(0.3, 60, 0, 0.8955, kind="refinement"))
    points = [CurvePoint.model_validate(p) for p in curve]
    summary = summarize(points)
    recs = [recommend(points, CLASSES, D, d, "relative").model_dump(mode="json", by_alias=True) for d in deltas]
    return {
        "config": {"model": {"name": "toy_net"}, "dataset": {"spec": "npz:/home/someone/toy.npz"},
                   "deltas": list(deltas)},
        "model": {"name": "toy_net", "weights_source": "random", "weights_identity": "seed:0", "layer": "head",
                  "layer_pooling": "none", "d": D, "input_size": [3, 32, 32]},
        "dataset": {"spec": "npz:/home/someone/toy.npz", "classes": CLASSES, "sizes": {"train": 300, "test": 100}},
        "full_accuracy": 0.9,
        "curve": curve,
        "summary": [s.model_dump(mode="json") for s in summary],
        "recommendations": recs,
        "timings": {},
        "environment": {"device": "cpu", "amp": False, "torch": "x", "timm": "x", "numpy": "x", "python": "x",
                        "code_version": "x", "feature_cache_hit": False},
    }


def _svg_text(svg: bytes) -> str:
    root = ET.fromstring(svg)
    assert root.tag.endswith("svg")
    return " ".join(t for el in root.iter() for t in (el.text,) if t)


def test_png_is_valid() -> None:
    png = render(_report(baselines=True), fmt="png")
    assert png[:8] == PNG_MAGIC and len(png) > 10_000


def test_svg_shows_deltas_panels_and_the_answer_in_the_title() -> None:
    rep = Report.model_validate(_report())
    first = rep.recommendations[0]
    assert first.met_below_full and first.k < D
    text = _svg_text(render(rep, fmt="svg"))
    for r in rep.recommendations:
        assert f"f* = {r.fraction:g} at δ={r.delta:g}" in text
    for expected in ("within δ=0.01 of full", "linear CKA", "Gini of per-class accuracy", "subset vs subset",
                     "toy_net · npz:toy.npz · layer head",
                     f"keep {first.k} of {D} neurons (f* = {first.fraction:g}, DR = {first.dr:.3f})",
                     f"Gini {first.fairness.gini_full:.3f} → {first.fairness.gini_at:.3f}",
                     "δ = 0.01 (relative, mean)"):
        assert expected in text, expected
    assert "PCA top-k" not in text and "refinement" not in text and "/home/someone" not in text


def test_title_says_keep_the_full_layer_when_nothing_below_it_is_within_delta() -> None:
    text = _svg_text(render(_report(), fmt="svg", deltas=[0.0]))
    assert "no tested fraction below 1 is within δ; keep all 200 neurons" in text


def test_baselines_and_refinement_are_overlaid_when_present() -> None:
    text = _svg_text(render(_report(baselines=True, refinement=True), fmt="svg"))
    for label in ("PCA top-k", "first k neurons", "random projection", "refinement"):
        assert label in text


@pytest.mark.parametrize("refinement", [False, True])
@pytest.mark.parametrize("mode", ["relative", "absolute"])
@pytest.mark.parametrize("criterion", ["mean", "worst_seed"])
def test_f_star_and_threshold_are_recommends_for_stored_and_new_deltas(refinement, mode, criterion) -> None:
    rep = Report.model_validate(_report(refinement=refinement))
    intervals = intervals_from_summary(rep.summary) or None
    new = [0.0, 0.002, 0.004, 0.008, 0.02, 0.2, 0.5, 0.99]
    for delta in [*(r.delta for r in rep.recommendations), *new]:
        (m,) = markers(rep, [delta], mode, criterion)
        want = recommend(rep.curve, CLASSES, D, delta, mode, criterion, intervals=intervals)
        assert (m.f_star, m.rec.k, m.rec.threshold) == (want.fraction, want.k, want.threshold), delta


@pytest.mark.parametrize(("mode", "criterion"), [("relative", "mean"), ("absolute", "worst_seed")])
def test_rendered_labels_carry_recommends_f_star(mode, criterion) -> None:
    rep = Report.model_validate(_report(refinement=True))
    deltas = [0.0, 0.004, 0.02, 0.2]
    text = _svg_text(render(rep, fmt="svg", deltas=deltas, mode=mode, criterion=criterion))
    for delta in deltas:
        want = recommend(rep.curve, CLASSES, D, delta, mode, criterion)
        assert f"f* = {want.fraction:g} at δ={delta:g}" in text


def test_stored_deltas_by_default_and_the_refinement_probe_can_be_f_star() -> None:
    rep = Report.model_validate(_report(refinement=True))
    assert [m.f_star for m in markers(rep)] == [r.fraction for r in rep.recommendations]
    # δ = 0.005 relative: threshold 0.8955; the grid's 0.1 (0.892) fails, the refinement at 0.3 passes
    (m,) = markers(rep, [0.005])
    assert m.f_star == 0.3 and m.rec.refined


def test_bad_delta_is_refused_as_recommend_refuses_it() -> None:
    with pytest.raises(InvalidConfigError, match="outside"):
        markers(_report(), [1.5])


def test_zoom_panel_is_linear_around_f_star_and_the_others_log() -> None:
    rep = Report.model_validate(_report())
    fig = build_figure(rep, deltas=[0.01])
    zoom, acc, cka, gini_ax = fig.axes[:4]
    f_star = markers(rep, [0.01])[0].f_star
    lo, hi = zoom.get_xlim()
    assert zoom.get_xscale() == "linear" and lo < f_star < hi
    tested = sorted({p.fraction for p in rep.curve if p.kind == "random"})
    i = tested.index(f_star)
    assert lo < tested[i - 1] and tested[i + 1] < hi  # its neighbours on the grid are in view
    assert [a.get_xscale() for a in (acc, cka, gini_ax)] == ["log"] * 3


def test_dict_and_report_give_the_same_figure_and_output_is_deterministic() -> None:
    rep = _report()
    assert render(rep, fmt="svg") == render(Report.model_validate(rep), fmt="svg")
    assert render(rep, fmt="svg") == render(rep, fmt="svg")
    with pytest.raises(ValueError):
        render(rep, fmt="jpg")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        render([1, 2, 3])  # type: ignore[arg-type]


def test_a_retrieval_report_plots_its_metric_and_query_deciles() -> None:
    """The same figure for `task: retrieval`: the score axis names the metric, the Gini panel the query deciles,
    and f* is `recommend()`'s on the decile vectors."""
    deciles = [f"queries {10 * i}–{10 * (i + 1)}%" for i in range(10)]
    rep = _report()
    for p in rep["curve"]:
        p["metric"] = "ndcg@10"
        p["per_class_accuracy"] = list(np.linspace(0.0, 2 * p["accuracy"], 10))
    points = [CurvePoint.model_validate(p) for p in rep["curve"]]
    rep["recommendations"] = [recommend(points, deciles, D, d, "relative").model_dump(mode="json", by_alias=True)
                              for d in (0.01, 0.05)]
    rep["config"] |= {"task": "retrieval"}
    rep["dataset"]["fairness_groups"] = deciles
    parsed = Report.model_validate(rep)
    assert parsed.fairness_groups == deciles and parsed.recommendations[0].metric == "ndcg@10"
    text = _svg_text(render(parsed, fmt="svg"))
    assert "retrieval ndcg@10 (mean over queries)" in text and "Gini of per-query scores" in text
    assert "test accuracy" not in text
    for r in parsed.recommendations:
        assert f"f* = {r.fraction:g} at δ={r.delta:g}" in text
