"""A head on any layer of a sweep (issue 21): the bundled EfficientNet-Lite0 over a tiny digits subset at 32 px,
swept at three layers. The artifact for a pinned intermediate layer records its `forward_intermediates` index,
is fitted from that layer's block of the joined statistics, and reproduces that layer's probe accuracy on the
job's stored test features and through `attach` on the real images (1e-6)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from redundancy import AnalysisConfig, Runtime
from redundancy.deploy import attach, build_artifact, export_artifacts, layer_report, layer_stats, load_artifact
from redundancy.pipeline import prepare_data, run_analysis
from redundancy.sources.extraction import Features
from redundancy.sources.models import load_model
from redundancy.sweep import LayerCurve, across_layers

LAYERS = ["blocks.2", "blocks.4", "pre_logits"]
CONFIG = {
    "model": {"name": "tf_efficientnet_lite0", "weights": "bundled"},
    "dataset": {"spec": "digits", "max_train": 200, "max_test": 100},
    "image_size": 32, "layers": LAYERS, "fractions": [0.25, 0.5, 1.0], "seeds": 2, "deltas": [0.05],
    "baselines": [], "bootstrap": 0, "feature_dtype": "float32",  # stored test rows = the rows the engine scored
}


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("sweep")
    rt = Runtime(cache_dir=root / "cache", data_root=root, work_dir=root / "work")
    out = run_analysis(AnalysisConfig.model_validate(CONFIG), rt)
    features = Features.load(next(meta.parent for meta in (root / "cache").glob("*/meta.json")))
    return out, features, rt


def test_the_sweep_keeps_joined_statistics_whose_blocks_are_each_layers(swept) -> None:  # type: ignore[no-untyped-def]
    out, features, _rt = swept
    widths = [x.d for x in out.report.layers]
    assert [x.layer for x in out.report.layers] == LAYERS and out.stats.d == sum(widths) == features.d
    for x in out.report.layers:
        view = layer_report(out.report, x.layer)
        assert (view.model.layer, view.model.d, view.curve) == (x.layer, x.d, x.curve or out.report.curve)
        assert layer_stats(view, out.stats).d == x.d


def test_an_intermediate_layers_artifact_reproduces_its_probe_through_attach(swept) -> None:  # type: ignore[no-untyped-def]
    out, features, rt = swept
    report = out.report
    # an intermediate stage that is not the reference layer (whose curve is the report's own)
    i = next(j for j, x in enumerate(report.layers) if not x.reference and x.layer != "pre_logits")
    x = report.layers[i]
    assert x.index is not None and x.curve
    rec = across_layers([LayerCurve(x.layer, x.d, x.curve)], report.dataset.classes, 0.2)  # the `layer=` pin
    assert rec.layer == x.layer and rec.k < x.d
    view = layer_report(report, x.layer)
    sha, data_config = out.model_facts
    art = build_artifact(view, layer_stats(view, out.stats), rec, weights_sha256=sha, data_config=data_config)
    assert art.layer == x.layer and art.d == x.d and art.metadata["model"]["intermediates_index"] == x.index

    start = sum(w.d for w in report.layers[:i])
    x_test = np.asarray(features.x_test)[:, start:start + x.d]  # the job's stored test features of that layer
    probe_acc = art.metadata["subset"]["test_accuracy"]
    assert abs(float((art.predict(x_test) == features.y_test).mean()) - probe_acc) <= 1e-6

    clf = attach(load_model("tf_efficientnet_lite0", "bundled").module, art, dtype=torch.float64)
    with torch.inference_mode():  # the attached head on the job's test features of that layer: the probe exactly
        on_features = clf.head(torch.from_numpy(x_test)).argmax(1).numpy()
    assert abs(float((on_features == features.y_test).mean()) - probe_acc) <= 1e-6

    test = prepare_data(report.config, rt).test  # and the attached backbone, read at that layer, on the images
    transform = art.transform()
    images = torch.stack([transform(test.load(j)) for j in range(len(test))])
    with torch.inference_mode():
        raw = clf.features(images)
        pred = clf.head(raw).argmax(1).numpy()
    # the extraction runs channels-last with a batched transform: the same features up to rounding
    rel = float(np.linalg.norm(raw.numpy() - x_test) / np.linalg.norm(x_test))
    assert rel < 0.01, rel
    assert abs(float((pred == test.labels).mean()) - probe_acc) <= 0.02


def test_export_writes_each_answer_on_its_own_layer(swept, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out, _features, _rt = swept
    [path] = export_artifacts(out.report, tmp_path, out.stats, out.model_facts)
    rec = out.report.recommendations[0]
    art = load_artifact(path)
    assert art.layer == rec.layer and art.k == rec.k and rec.layer in path.name
