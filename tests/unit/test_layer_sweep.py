"""The layer sweep's pure parts (issue 21): the config field, the memory preflight, the per-layer slice of a
joined store, the reference layer chosen without test data, and the (layer, k) across layers."""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np
import pytest
from pydantic import ValidationError

from redundancy.advice.recommend import recommend
from redundancy.config import AnalysisConfig
from redundancy.errors import InvalidConfigError
from redundancy.pipeline import check_layer_memory, layer_features, run_probes
from redundancy.report import CurvePoint
from redundancy.sources.extraction import Features
from redundancy.sources.stats import GramStats
from redundancy.sweep import LayerCurve, across_layers, choose_reference, full_selection

C = 4
WIDTHS = (12, 30)


def _joined(seed: int = 0) -> Features:
    """Two 'layers' side by side: a weak one (12 columns) and a strong one (30 columns)."""
    rng = np.random.default_rng(seed)
    n = 600
    y = rng.integers(0, C, n)
    weak = rng.normal(size=(C, WIDTHS[0]))[y] * 0.3 + rng.normal(size=(n, WIDTHS[0]))
    strong = rng.normal(size=(C, WIDTHS[1]))[y] * 1.5 + rng.normal(size=(n, WIDTHS[1]))
    x = np.hstack([weak, strong])
    return Features(GramStats.from_features(x[:400], y[:400], C), x[:400], y[:400], x[400:450], y[400:450],
                    x[450:], y[450:], "synthetic")


def _config(**over: object) -> AnalysisConfig:
    return AnalysisConfig(model={"name": "synthetic"}, dataset={"spec": "synthetic"}, fractions=[0.1, 0.5, 1.0],
                          seeds=3, baselines=[], bootstrap=0, **over)


def _curves(features: Features, config: AnalysisConfig) -> list[LayerCurve]:
    out, start = [], 0
    for i, w in enumerate(WIDTHS):
        layer = layer_features(features, start, start + w, "synthetic")
        out.append(LayerCurve(f"l{i}", w, run_probes(config, layer).curve))
        start += w
    return out


def test_layers_field_accepts_a_list_or_sweep_and_names_itself_when_bad() -> None:
    base = {"model": {"name": "resnet18"}, "dataset": {"spec": "digits"}}
    assert AnalysisConfig.model_validate({**base, "layers": "sweep"}).layer_names() is None
    assert AnalysisConfig.model_validate({**base, "layers": ["layer3", "pre_logits"]}).layer_names() == [
        "layer3", "pre_logits"]
    assert AnalysisConfig.model_validate({**base, "layer": "layer3"}).layer_names() == ["layer3"]
    for bad, says in (("all", "layers"), ([], "1 to 64"), (["a", "a"], "more than once"), (3, "layers")):
        with pytest.raises(ValidationError) as err:
            AnalysisConfig.model_validate({**base, "layers": bad})
        assert err.value.errors()[0]["loc"][0] == "layers" and says in str(err.value)
    with pytest.raises(ValidationError, match="either layer or layers"):
        AnalysisConfig.model_validate({**base, "layer": "layer3", "layers": ["layer2"]})
    with pytest.raises(ValidationError, match="classification"):
        AnalysisConfig.model_validate({**base, "layers": "sweep", "task": "retrieval"})


def test_the_layers_flag_takes_names_or_sweep() -> None:
    from redundancy.cli.options import add_config_options, config_from_namespace  # noqa: PLC0415

    parser = argparse.ArgumentParser()
    add_config_options(parser)
    base = ["--model", "resnet18", "--dataset", "digits"]
    assert config_from_namespace(parser.parse_args([*base, "--layers", "sweep"])).layers == "sweep"
    assert config_from_namespace(parser.parse_args([*base, "--layers", "layer2,layer3"])).layers == ["layer2", "layer3"]


def test_a_config_without_layers_hashes_as_before() -> None:
    base = {"model": {"name": "resnet18"}, "dataset": {"spec": "digits"}}
    plain = AnalysisConfig.model_validate(base)
    assert "layers" not in plain.model_dump(mode="json") or plain.layers is None
    assert plain.config_hash() != AnalysisConfig.model_validate({**base, "layers": "sweep"}).config_hash()
    # the hash leaves a None `layers` out: the same text as a config written before the field existed
    data = plain.model_dump(mode="json")
    data.pop("layers")
    assert AnalysisConfig.model_validate(data).config_hash() == plain.config_hash()


def test_memory_preflight_refuses_with_the_number_and_the_field() -> None:
    config = _config()
    check_layer_memory(config, [16, 24], 8 * 40**2)  # exactly fits
    with pytest.raises(InvalidConfigError) as err:
        check_layer_memory(config, [16, 24], 8 * 40**2 - 1)
    assert err.value.field == "layers" and f"{8 * 40 ** 2:,} bytes" in err.value.message


def test_a_layer_slice_equals_the_layer_alone() -> None:
    joined = _joined()
    stats = GramStats.from_features(np.asarray(joined.x_train)[:, 12:], joined.y_train, C)
    alone = dataclasses.replace(joined, stats=stats)
    sliced = layer_features(joined, 12, 42, "p")
    np.testing.assert_allclose(sliced.stats.gram, alone.stats.gram, rtol=1e-12)
    np.testing.assert_array_equal(sliced.x_test, np.asarray(joined.x_test)[:, 12:])
    assert sliced.d == 30 and sliced.stats.class_sums.shape == (C, 30)


def test_the_reference_layer_ignores_test_labels() -> None:
    """Permuting the test labels changes every test score but not the training-side choice of layer."""
    config = _config()
    joined = _joined()
    curves = _curves(joined, config)
    rng = np.random.default_rng(1)
    permuted = dataclasses.replace(joined, y_test=rng.permutation(joined.y_test))
    shuffled = _curves(permuted, config)
    assert [full_selection(c.curve, c.d) for c in curves] == [full_selection(c.curve, c.d) for c in shuffled]
    assert choose_reference(curves) == choose_reference(shuffled) == 1  # the strong layer
    assert [p.accuracy for p in curves[1].curve] != [p.accuracy for p in shuffled[1].curve]


def _pts(k: int, d: int, accs: list[float], sel: float) -> list[CurvePoint]:
    return [CurvePoint(fraction=k / d, k=k, seed=s, accuracy=a, per_class_accuracy=[a, a], lam=1.0,
                       selection="gcv", selection_score=sel) for s, a in enumerate(accs)]


def test_fewest_neurons_across_layers_within_delta_of_the_reference_ties_to_the_earlier() -> None:
    # layer a (d 40): GCV 0.7 (worse); layer b (d 100): GCV 0.5 (reference), full 0.90
    a = LayerCurve("a", 40, _pts(10, 40, [0.80, 0.80], 0.9) + _pts(20, 40, [0.89, 0.88], 0.8)
                   + _pts(40, 40, [0.91], 0.7))
    b = LayerCurve("b", 100, _pts(20, 100, [0.87, 0.87], 0.6) + _pts(50, 100, [0.9, 0.9], 0.55)
                   + _pts(100, 100, [0.90], 0.5))
    assert choose_reference([a, b]) == 1
    rec = across_layers([a, b], ["x", "y"], 0.05)  # bar 0.855: a at k 20 (0.885) and b at k 20 (0.87): tie → a
    assert (rec.layer, rec.k, rec.reference_layer) == ("a", 20, "b")
    assert rec.threshold == pytest.approx(0.855) and rec.reference_score == pytest.approx(0.90)
    strict = across_layers([a, b], ["x", "y"], 0.02)  # bar 0.882: a at 20 (0.885) → a
    assert (strict.layer, strict.k) == ("a", 20)
    whole = across_layers([a, b], ["x", "y"], 0.0)  # bar 0.90: a kept whole (40, 0.91) beats b at 50
    assert (whole.layer, whole.k, whole.met_below_full) == ("a", 40, False)
    assert across_layers([b], ["x", "y"], 0.0).k == 50


def test_one_layer_is_the_single_layer_answer() -> None:
    curve = _pts(10, 40, [0.80, 0.70], 0.9) + _pts(20, 40, [0.89, 0.88], 0.8) + _pts(40, 40, [0.91], 0.7)
    mine = across_layers([LayerCurve("only", 40, curve)], ["x", "y"], 0.05)
    plain = recommend(curve, ["x", "y"], 40, 0.05)
    assert (mine.k, mine.threshold, mine.score, mine.note) == (plain.k, plain.threshold, plain.score, plain.note)
    assert mine.layer == "only"
