"""Plots render to valid PNG and SVG with what the report holds, from a dict or a Report."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pytest
from pydantic import ValidationError

from redundancy.plots import render

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _point(fraction: float, k: int, seed: int, acc: float, kind: str = "random", c: int = 4, **extra):
    rng = np.random.default_rng([k, seed, len(kind)])
    per_class = np.clip(acc + rng.normal(scale=(1 - acc) / 2, size=c), 0, 1).tolist()
    return {
        "fraction": fraction, "k": k, "seed": seed, "accuracy": acc, "per_class_accuracy": per_class,
        "cka": min(1.0, 0.2 + fraction), "lam": 1.0, "kind": kind, **extra,
    }


def _report(baselines: bool = False, refinement: bool = False) -> dict:
    d = 200
    curve = []
    for f in (0.005, 0.01, 0.05, 0.1, 0.5):
        k = round(f * d)
        for s in range(3):
            curve.append(_point(f, k, s, 0.9 - 0.05 / f**0.5 * 0.05 + 0.005 * s, cka_pair=f ** 0.3))
    curve.append(_point(1.0, d, 0, 0.9))
    if baselines:
        for f in (0.01, 0.1, 0.5, 1.0):
            k = round(f * d)
            curve.append(_point(f, k, 0, 0.88, kind="pca"))
            curve.append(_point(f, k, 0, 0.7, kind="first_k"))
            curve += [_point(f, k, s, 0.8 + 0.01 * s, kind="random_projection") for s in range(2)]
    if refinement:
        curve.append(_point(0.3, 60, 0, 0.885, kind="refinement"))
    recs = [
        {"delta": 0.01, "mode": "relative", "criterion": "mean", "fraction": 0.5, "k": 100,
         "threshold": 0.891},
        {"delta": 0.05, "mode": "relative", "criterion": "mean", "fraction": 0.1, "k": 20,
         "threshold": 0.855},
    ]
    return {
        "config": {"delta_mode": "relative"}, "model": {"name": "toy_net"}, "dataset": {"spec": "digits"},
        "full_accuracy": 0.9, "curve": curve, "recommendations": recs,
    }


def _svg_text(svg: bytes) -> str:
    root = ET.fromstring(svg)
    assert root.tag.endswith("svg")
    return " ".join(t for el in root.iter() for t in (el.text,) if t)


def test_png_is_valid() -> None:
    png = render(_report(baselines=True), fmt="png")
    assert png[:8] == PNG_MAGIC and len(png) > 10_000


def test_svg_parses_and_shows_deltas_and_panels() -> None:
    text = _svg_text(render(_report(), fmt="svg"))
    for expected in ("f* = 0.5 at δ=0.01", "f* = 0.1 at δ=0.05", "within δ=0.01 of full",
                     "linear CKA", "Gini of per-class accuracy", "subset vs subset", "toy_net · digits"):
        assert expected in text
    assert "PCA top-k" not in text and "refinement" not in text


def test_baselines_and_refinement_are_overlaid_when_present() -> None:
    text = _svg_text(render(_report(baselines=True, refinement=True), fmt="svg"))
    for label in ("PCA top-k", "first k neurons", "random projection", "refinement"):
        assert label in text


def test_deltas_argument_selects_and_computes_markers() -> None:
    # δ = 0.2 is not among the recommendations: its f* comes from the curve (smallest fraction ≥ 0.72)
    text = _svg_text(render(_report(), fmt="svg", deltas=[0.2]))
    assert "f* = 0.005 at δ=0.2" in text and "δ=0.01" not in text


def test_svg_is_deterministic_and_bad_format_rejected() -> None:
    assert render(_report(), fmt="svg") == render(_report(), fmt="svg")
    with pytest.raises(ValueError):
        render(_report(), fmt="jpg")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        render([1, 2, 3])


def test_accepts_a_report_model() -> None:
    from redundancy.report import Report

    rep = _report()
    try:
        model = Report.model_validate(
            {
                **rep,
                "config": {"model": {"name": "toy_net"}, "dataset": {"spec": "digits"}},
                "model": {"name": "toy_net", "weights_source": "random", "weights_identity": "seed:0",
                          "layer": "head", "layer_pooling": "none", "d": 200, "input_size": [3, 32, 32]},
                "dataset": {"spec": "digits", "classes": list("abcd"), "sizes": {"train": 1}},
                "summary": [],
                "recommendations": [],
                "timings": {},
                "environment": {"device": "cpu", "amp": False, "torch": "x", "timm": "x", "numpy": "x",
                                "python": "x", "code_version": "x", "feature_cache_hit": False},
            }
        )
    except ValidationError as exc:  # the lead may extend the schema; the dict path is tested above
        pytest.skip(f"Report schema changed: {exc}")
    png = render(model, fmt="png", deltas=[0.05])
    assert png[:8] == PNG_MAGIC
